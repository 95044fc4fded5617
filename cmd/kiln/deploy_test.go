package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unit is what the tests read of a systemd unit in deploy/systemd.
type unit struct {
	text      string
	env       map[string]string // Environment= lines, later ones win
	execStart string
}

func readUnit(t *testing.T, name string) unit {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	u := unit{text: string(b), env: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		switch {
		case !ok:
		case k == "Environment":
			name, val, _ := strings.Cut(v, "=")
			u.env[name] = val
		case k == "ExecStart":
			u.execStart = v
		}
	}
	return u
}

// argv expands the unit's ExecStart the way systemd does for the forms the
// units use: "${VAR}" inside a word is replaced by the value, a word
// "$VAR" by the value split at white space (none when empty). The binary
// is replaced by bin; override sets variables as /etc/default would.
func (u unit) argv(t *testing.T, bin string, override map[string]string) []string {
	t.Helper()
	env := map[string]string{}
	for k, v := range u.env {
		env[k] = v
	}
	for k, v := range override {
		if _, ok := env[k]; !ok {
			t.Fatalf("the unit has no Environment=%s to override", k)
		}
		env[k] = v
	}
	braced := regexp.MustCompile(`\$\{([A-Z_]+)\}`)
	var out []string
	for _, w := range strings.Fields(u.execStart) {
		if strings.HasPrefix(w, "$") && !strings.HasPrefix(w, "${") {
			out = append(out, strings.Fields(env[w[1:]])...)
			continue
		}
		out = append(out, braced.ReplaceAllStringFunc(w, func(m string) string { return env[m[2:len(m)-1]] }))
	}
	if out[0] != "/usr/local/bin/kiln" {
		t.Fatalf("ExecStart runs %s, want /usr/local/bin/kiln", out[0])
	}
	out[0] = bin
	return out
}

// TestSystemdUnits starts a master and a slave from the ExecStart lines of
// deploy/systemd (with the addresses and paths an /etc/default file would
// set), runs a job through them, and stops them as systemd does; it checks
// the settings the units promise and, where systemd-analyze is installed,
// that systemd accepts them without a warning.
func TestSystemdUnits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts master and slave processes")
	}
	bin := kilnBinary(t)
	mu, su := readUnit(t, "kiln-master.service"), readUnit(t, "kiln-slave.service")
	for _, want := range []string{"RestartPreventExitStatus=110 2", "Delegate=yes", "KillSignal=SIGTERM", "NoNewPrivileges=yes"} {
		if !strings.Contains(su.text, want+"\n") {
			t.Errorf("kiln-slave.service lacks %s", want)
		}
	}
	if exitRefused != 110 {
		t.Errorf("the slave's refused-for-good exit code is %d; the unit's RestartPreventExitStatus says 110", exitRefused)
	}
	for _, want := range []string{"RestartPreventExitStatus=2", "ProtectSystem=strict", "SystemCallFilter=@system-service", "CapabilityBoundingSet=\n"} {
		if !strings.Contains(mu.text, want) {
			t.Errorf("kiln-master.service lacks %s", want)
		}
	}

	dir := t.TempDir()
	mustKiln(t, "certs", "init", "--dir", dir, "--master-host", "127.0.0.1")
	mustKiln(t, "certs", "issue", "--dir", dir, "--role", "client", "--name", "user", "--out", filepath.Join(dir, "client.bundle"))
	mustKiln(t, "certs", "issue", "--dir", dir, "--role", "slave", "--name", "unit-slave", "--out", filepath.Join(dir, "slave.bundle"))
	clientAddr, slaveAddr, mMetrics, sMetrics := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	margv := mu.argv(t, bin, map[string]string{"KILN_DIR": dir, "KILN_CLIENT_ADDR": clientAddr, "KILN_SLAVE_ADDR": slaveAddr,
		"KILN_METRICS_ADDR": mMetrics, "KILN_MASTER_FLAGS": "--heartbeat 500ms"})
	m := &proc{cmd: exec.Command(margv[0], margv[1:]...), out: &syncBuf{}, done: make(chan struct{})}
	m.start(t, "master")
	m.waitOutput(t, `"msg":"master listening"`, 1)
	sargv := su.argv(t, bin, map[string]string{"KILN_BUNDLE": filepath.Join(dir, "slave.bundle"), "KILN_MASTER": slaveAddr,
		"KILN_METRICS_ADDR": sMetrics, "KILN_WORK_DIR": filepath.Join(dir, "work"), "KILN_CACHE_DIR": filepath.Join(dir, "cache"),
		"KILN_SLAVE_FLAGS": "--slots 1 --load-interval 500ms"})
	s := &proc{cmd: exec.Command(sargv[0], sargv[1:]...), out: &syncBuf{}, done: make(chan struct{})}
	s.start(t, "slave")
	m.waitOutput(t, `"msg":"slave registered"`, 1)

	env := []string{"KILN_BUNDLE=" + filepath.Join(dir, "client.bundle"), "KILN_MASTER=" + clientAddr}
	code, out, errs := kilnCmd(t, env, "run", writeFile(t, t.TempDir(), "unit.py", "print('from the units')\n"))
	if code != 0 || out != "from the units\n" {
		t.Fatalf("kiln run: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	for _, addr := range []string{mMetrics, sMetrics} {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s/readyz: %s", addr, resp.Status)
		}
	}
	// systemd stops with KillSignal=SIGTERM; both exit 0 (no restart).
	for _, p := range []*proc{s, m} {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%v ignored SIGTERM", p.cmd.Args[1])
		}
		if c := p.cmd.ProcessState.ExitCode(); c != 0 {
			t.Errorf("%s exited %d after SIGTERM", p.cmd.Args[1], c)
		}
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: units not verified by systemd")
		return
	}
	vdir := t.TempDir()
	var names []string
	for _, name := range []string{"kiln-master.service", "kiln-slave.service"} {
		u := readUnit(t, name)
		if err := os.WriteFile(filepath.Join(vdir, name), []byte(strings.ReplaceAll(u.text, "/usr/local/bin/kiln", bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Join(vdir, name))
	}
	vout, err := exec.Command(sa, append([]string{"verify"}, names...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(vout)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, vout)
	}
}
