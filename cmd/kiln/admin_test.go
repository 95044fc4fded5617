package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln/master"
)

// adminCluster is an in-process master (runMaster, as `kiln master` runs
// it) with an admin, a client and a slave bundle.
type adminCluster struct {
	dir, addr, metrics string
	bundles            map[string]string // name -> bundle path
	srv                *master.Server
}

func startAdminCluster(t *testing.T) *adminCluster {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "cluster")
	mustCLI(t, "init", "--dir", dir)
	ac := &adminCluster{dir: dir, bundles: map[string]string{}}
	for _, n := range []struct{ role, name string }{{"admin", "ops"}, {"client", "alice"}, {"slave", "s1"}} {
		ac.bundles[n.name] = filepath.Join(dir, n.name+".bundle")
		mustCLI(t, "issue", "--dir", dir, "--role", n.role, "--name", n.name, "--out", ac.bundles[n.name])
	}
	ac.metrics = unusedAddr(t)
	f := masterFlags{dir: dir, clientAddr: "127.0.0.1:0", slaveAddr: "127.0.0.1:0", metricsAddr: ac.metrics,
		name: "master", queue: 16, heartbeat: 2 * time.Second, console: "off"}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *master.Server, 1)
	done := make(chan error, 1)
	e := env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	go func() {
		done <- runMaster(ctx, e, f, slog.New(slog.DiscardHandler), func(s *master.Server) { ready <- s })
	}()
	select {
	case ac.srv = <-ready:
	case err := <-done:
		t.Fatalf("master: %v", err)
	}
	ac.addr = ac.srv.ClientAddr()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("master: %v", err)
		}
	})
	return ac
}

func unusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// admin runs `kiln admin args...` in-process with the given environment.
func adminCLI(t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code = run(ctx, e, append([]string{"admin"}, args...))
	return code, out.String(), errb.String()
}

func TestAdminCLI(t *testing.T) {
	ac := startAdminCluster(t)
	as := func(name string, args ...string) (int, string, string) {
		t.Helper()
		return adminCLI(t, nil, append([]string{"--bundle", ac.bundles[name], "--master", ac.addr}, args...)...)
	}

	code, out, errs := as("ops", "server", "list")
	if code != 0 || !strings.Contains(out, "LANGUAGES") || !strings.Contains(out, "0 slave(s)") {
		t.Errorf("server list: exit %d\n%s%s", code, out, errs)
	}
	// The session of the command before may not be gone from the master's
	// table yet (its end travels on its own): wait until only this
	// command's session is listed.
	for deadline := time.Now().Add(10 * time.Second); ; {
		code, out, _ = as("ops", "client", "list", "--json")
		var clients []master.ClientInfo
		err := json.Unmarshal([]byte(out), &clients)
		if code == 0 && err == nil && len(clients) == 1 && clients[0].Name == "ops" {
			break
		}
		if code != 0 || err != nil || len(clients) == 0 || clients[0].Name != "ops" || time.Now().After(deadline) {
			t.Errorf("client list --json: exit %d, %v\n%s", code, err, out)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// KILN_BUNDLE and KILN_MASTER stand for the flags; help is the console's.
	code, out, _ = adminCLI(t, map[string]string{"KILN_BUNDLE": ac.bundles["ops"], "KILN_MASTER": ac.addr}, "help")
	for _, cmd := range master.Commands() {
		if !strings.Contains(out, cmd.Usage()) {
			t.Errorf("help: no %q (exit %d)\n%s", cmd.Usage(), code, out)
		}
	}
	code, out, errs = as("ops", "job", "show", "J9")
	if code != 1 || out != "" || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "no job J9") {
		t.Errorf("job show J9: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = as("ops", "frobnicate")
	if code != 1 || !strings.Contains(errs, "unknown command") {
		t.Errorf("frobnicate: exit %d, %q", code, errs)
	}

	code, _, errs = as("alice", "server", "list")
	if code != exitRefused || !strings.Contains(errs, "admin key") {
		t.Errorf("client key: exit %d, %q", code, errs)
	}
	code, _, errs = as("s1", "server", "list")
	if code != exitRefused || !strings.Contains(errs, "role_mismatch") {
		t.Errorf("slave key: exit %d, %q", code, errs)
	}
	code, _, errs = adminCLI(t, nil, "--bundle", ac.bundles["ops"], "--master", unusedAddr(t), "keys", "list")
	if code != exitUnreachable {
		t.Errorf("unreachable master: exit %d, %q", code, errs)
	}
	code, _, errs = adminCLI(t, nil, "server", "list")
	if code != exitUsage || !strings.Contains(errs, "KILN_BUNDLE") {
		t.Errorf("no bundle: exit %d, %q", code, errs)
	}

	code, out, errs = as("ops", "keys", "revoke", "alice")
	if code != 0 || !strings.Contains(out, "revoked alice") {
		t.Errorf("keys revoke: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = as("ops", "--json", "keys", "list")
	var keys struct {
		Keys []struct{ Name, Status string }
	}
	if err := json.Unmarshal([]byte(out), &keys); code != 0 || err != nil {
		t.Fatalf("keys list --json: exit %d, %v\n%s", code, err, out)
	}
	for _, k := range keys.Keys {
		if k.Name == "alice" && k.Status != "revoked" {
			t.Errorf("alice is %s after keys revoke", k.Status)
		}
	}
	code, _, errs = as("alice", "server", "list")
	if code != exitRefused || !strings.Contains(errs, "revoked") {
		t.Errorf("revoked key: exit %d, %q", code, errs)
	}

	resp, err := http.Get("http://" + ac.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, series := range []string{`kiln_peers{role="admin"}`, "kiln_queue_length 0", `kiln_refusals_total{code="revoked_key"}`, "go_goroutines",
		`kiln_build_info{component="master",go_version="go`, `version="` + version + `"} 1`, "kiln_capacity_slots 0"} {
		if !strings.Contains(string(body), series) {
			t.Errorf("metrics: no %s in\n%s", series, body)
		}
	}
	for _, probe := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + ac.metrics + probe)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s %s", probe, resp.Status, b)
		}
	}
}

// TestAdminCLIForScripts: errors under --json are JSON on stdout with the
// wire code and exit code; -o wide and --yes reach the master.
func TestAdminCLIForScripts(t *testing.T) {
	ac := startAdminCluster(t)
	as := func(args ...string) (int, string, string) {
		t.Helper()
		return adminCLI(t, nil, append([]string{"--bundle", ac.bundles["ops"], "--master", ac.addr}, args...)...)
	}
	for _, tc := range []struct {
		args []string
		exit int
		code string
		msg  string
	}{
		{[]string{"--json", "job", "show", "J9"}, 1, "not_found", "no job J9"},
		{[]string{"job", "show", "J9", "-o", "json"}, 1, "not_found", "no job J9"},
		{[]string{"--json", "keys", "revoke", "ops"}, 1, "bad_request", "ops is your own key: revoking it ends your access at once; add --yes"},
		{[]string{"--json", "--master", unusedAddr(t), "keys", "list"}, exitUnreachable, "", "cannot reach master"},
	} {
		code, out, errs := as(tc.args...)
		var got struct {
			Error struct {
				Code     string `json:"code"`
				Message  string `json:"message"`
				ExitCode int    `json:"exit_code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != tc.exit || got.Error.ExitCode != tc.exit ||
			got.Error.Code != tc.code || !strings.Contains(got.Error.Message, tc.msg) {
			t.Errorf("%v: exit %d, %v, stdout %q, stderr %q; want exit %d, code %q, message %q", tc.args, code, err, out, errs, tc.exit, tc.code, tc.msg)
		}
	}
	code, out, errs := as("server", "list", "-o", "wide")
	if code != 0 || !strings.Contains(out, "ADDRESS") {
		t.Errorf("server list -o wide: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = as("keys", "retire", "client", "7.7")
	if code != 1 || !strings.Contains(errs, "a typo?") {
		t.Errorf("keys retire of a version no key has: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = as("--yes", "keys", "retire", "client", "7.7")
	if code != 0 || !strings.Contains(out, "retired client 7.7: 0 key(s)") {
		t.Errorf("keys retire --yes: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = as("keys", "unretire", "client", "7.7")
	if code != 0 || !strings.Contains(out, "unretired client 7.7") {
		t.Errorf("keys unretire: exit %d\n%s%s", code, out, errs)
	}
}
