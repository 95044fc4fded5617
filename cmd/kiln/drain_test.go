package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSlaveSIGTERMDrains stops a slave the way a service manager does,
// with SIGTERM, while it runs a job: the master hears at once that it takes
// no new job, the running job finishes and reaches its client, and only
// then does the slave exit, with 0.
func TestSlaveSIGTERMDrains(t *testing.T) {
	if testing.Short() {
		t.Skip("starts master and slave processes")
	}
	c := startCluster(t, 0)
	metrics := freeAddr(t)
	sl := c.addSlave(t, "slave-1", "--metrics-addr", metrics)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + metrics + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("slave /readyz before SIGTERM: %d %s", code, body)
	}
	prog := writeFile(t, t.TempDir(), "slow.py", "import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('finished')\n")
	run := exec.Command(kilnBinary(t), "run", prog)
	run.Env = append(os.Environ(), c.env...)
	var out, errb syncBuf
	run.Stdout, run.Stderr = &out, &errb
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- run.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "started") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "kiln_slave_jobs 1") ||
		!strings.Contains(body, `kiln_build_info{component="slave"`) || !strings.Contains(body, "kiln_slave_draining 0") {
		t.Errorf("slave /metrics while running a job: %d\n%s", code, body)
	}
	sigAt := time.Now()
	sl.cmd.Process.Signal(syscall.SIGTERM)
	sl.waitOutput(t, "draining: the master sends no new job", 1)
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("slave /readyz while draining: %d %s", code, body)
	}

	// New work is not sent to the draining slave.
	code, _, errs := kilnCmd(t, c.env, "run", writeFile(t, t.TempDir(), "later.py", "print(2)\n"))
	if code != exitNoCapacity {
		t.Errorf("a job submitted while the only slave drains: exit %d (want %d), stderr %q", code, exitNoCapacity, errs)
	}
	if err := <-first; err != nil || out.String() != "started\nfinished\n" {
		t.Fatalf("the running job: %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
	select {
	case <-sl.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the slave did not exit after its last job")
	}
	if code := sl.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("slave exit code %d after SIGTERM, want 0", code)
	}
	if d := time.Since(sigAt); d < time.Second {
		t.Errorf("the slave exited %v after SIGTERM, before its job could finish", d)
	}
	sl.waitOutput(t, "drained: every job finished; stopping", 1)
}
