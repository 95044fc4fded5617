package master_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kiln/certs"
	"kiln/master"
	"kiln/transport/wire"
)

// TestMetricsScrape runs a few jobs through fake slaves, refuses a peer,
// then scrapes /metrics over HTTP and checks the series operators watch.
func TestMetricsScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := master.NewMetrics(reg)
	c := newCluster(t, func(cfg *master.Config) { cfg.Metrics = m })
	m.WatchQueue(c.srv.QueueLen)
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(hs.Close)

	c.fakeSlave("s1", 2, false, "python", "c")
	c.fakeSlave("s2", 2, false, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{"a.py", "b.py", "c.c"} {
		id, e := submit(t, cs, uint64(i+1), f, []byte("print(1)\n"))
		if e != nil {
			t.Fatalf("submit: %+v", e)
		}
		collect(t, cs, id) // one at a time: submit skips messages that are not its answer
	}
	// A key the registry does not know is refused at the port.
	stranger, err := c.ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "mallory", Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.dial(stranger, false, ""); refusedCode(err) != wire.CodeUnknownKey {
		t.Fatalf("stranger: %v", err)
	}
	ad := c.admin(certs.RoleAdmin, "ops")
	ad.must("kick", "alice")
	refusal(t, cs)
	ad.must("drain", "s2")

	var text string
	waitFor(t, "metrics", func() bool {
		text = scrape(t, hs.URL)
		return strings.Contains(text, `kiln_peers{role="client"} 0`)
	})
	wantAll(t, "metrics", text,
		`kiln_peers{role="slave"} 2`,
		`kiln_peers{role="admin"} 1`,
		`kiln_peers{role="client"} 0`,
		`kiln_queue_length 0`,
		`kiln_jobs_total{language="python",status="ok"} 2`,
		`kiln_jobs_total{language="c",status="ok"} 1`,
		`kiln_dispatch_seconds_count 3`,
		`kiln_dispatch_seconds_bucket{le="+Inf"} 3`,
		`kiln_job_seconds_count 3`,
		`kiln_refusals_total{code="unknown_key"} 1`,
		`kiln_refusals_total{code="kicked"} 1`,
		`kiln_bytes_total{kind="upload"} 27`,
		`kiln_bytes_total{kind="output"} 27`,
		`kiln_slaves{state="available"} 1`, `kiln_slaves{state="drained"} 1`, `kiln_slaves{state="out"} 0`,
		`kiln_capacity_slots 2`, // s2 is drained below
		`kiln_running_jobs 0`,
		`kiln_slave_slots{slave="s1"} 2`, `kiln_slave_running_jobs{slave="s1"} 0`,
		`kiln_slave_drained{slave="s2"} 1`, `kiln_slave_drained{slave="s1"} 0`,
		`kiln_slave_cpu_percent{slave="s1"}`, `kiln_slave_report_age_seconds{slave="s2"}`,
		`kiln_job_seconds_bucket{le="0.025"}`, `kiln_dispatch_seconds_bucket{le="0.0005"}`,
	)
	// Bucket bounds are round numbers, not float noise.
	for _, le := range regexp.MustCompile(`le="([^"]+)"`).FindAllStringSubmatch(text, -1) {
		if len(le[1]) > 6 {
			t.Errorf("bucket bound le=%q is not a round number", le[1])
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s %v", resp.Status, err)
	}
	return string(b)
}
