package main

import (
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
	c := startCluster(t, 1)
	sl := c.slaves["slave-1"]
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
	sigAt := time.Now()
	sl.cmd.Process.Signal(syscall.SIGTERM)
	sl.waitOutput(t, "draining: the master sends no new job", 1)

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
