package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln/certs"
	"kiln/client"
	"kiln/transport/wire"
)

// restartMaster starts the cluster's master again on the same addresses
// and data directory.
func (c *e2eCluster) restartMaster(t *testing.T) {
	t.Helper()
	c.master = startKiln(t, "master (restarted)", "master", "--dir", c.dir, "--client-addr", c.clientAddr,
		"--slave-addr", c.slaveAddr, "--heartbeat", "500ms", "--console", "off")
	c.master.waitOutput(t, "durable state restored", 1)
}

// liveJob is a job followed by a client library session across the
// master's restart: every Result event is counted.
type liveJob struct {
	job     *client.Job
	results int
	stdout  string
}

// followAcross follows j until it ends, carrying it over to a new session
// whenever the master goes away.
func followAcross(ctx context.Context, t *testing.T, b *certs.Bundle, addr string, j *liveJob) (client.Outcome, error) {
	var clients []*client.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for {
		for ev := range j.job.Events() {
			if ev.Result != nil {
				j.results++
			}
		}
		out, err := j.job.Wait(ctx)
		if !errors.Is(err, client.ErrConnLost) {
			return out, err
		}
		for {
			c, err := client.Dial(ctx, client.Config{Bundle: b, Master: addr})
			if err == nil {
				clients = append(clients, c)
				nj, err := c.Reattach(ctx, j.job)
				if err != nil {
					return out, err
				}
				j.job = nj
				break
			}
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestDurableMasterKilled: SIGKILL (and in a second run SIGTERM) of the
// master while jobs are queued, running on the slave, and finished but
// not yet delivered to their client (a kiln submit whose client is gone).
// After the restart every job's result reaches its client exactly once,
// with the right output; running jobs were not run again (attempt 1);
// ids go on where they stopped; kiln result --wait from another process
// gets the submitted job; another client key cannot read it.
func TestDurableMasterKilled(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { testMasterGoesAway(t, sig) })
	}
}

func testMasterGoesAway(t *testing.T, sig syscall.Signal) {
	c := startCluster(t, 1) // one slave, 2 slots
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	work := t.TempDir()
	fast := writeFile(t, work, "fast.py", "print('fast done')\n")
	code, out, errs := kilnCmd(t, c.env, "submit", fast)
	if code != 0 {
		t.Fatalf("kiln submit: %d %s", code, errs)
	}
	asyncID := strings.TrimSpace(out)
	c.master.waitOutput(t, "job="+asyncID+" status=ok", 1) // finished, its client gone

	b, err := certs.ReadBundle(filepath.Join(c.dir, "client.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(ctx, client.Config{Bundle: b, Master: c.clientAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var jobs []*liveJob
	for i := range 5 { // 2 run on the slave's 2 slots, 3 wait in the queue
		// Long enough to be running through the restart, short enough
		// for the default time limit (the sandbox hides the host's files,
		// so a job cannot wait for one).
		src := fmt.Sprintf("import time\nprint('job %d started', flush=True)\ntime.sleep(3)\nprint('job %d done')\n", i, i)
		j, err := cl.Submit(ctx, client.Request{FileName: "slow.py", Source: []byte(src), Seal: i%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, &liveJob{job: j, stdout: fmt.Sprintf("job %d started\njob %d done\n", i, i)})
	}
	for _, j := range jobs[:2] { // running on the slave: wait for their first output
		for started := false; !started; {
			select {
			case ev, ok := <-j.job.Events():
				if !ok {
					t.Fatalf("job %s ended before it started: %v", j.job.ID(), jobErr(ctx, j.job))
				}
				started = ev.Output != nil
			case <-ctx.Done():
				t.Fatalf("job %s never started", j.job.ID())
			}
		}
	}
	if sig == syscall.SIGKILL {
		c.master.kill()
	} else {
		c.master.cmd.Process.Signal(sig)
		select {
		case <-c.master.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the master did not stop within 10 s of SIGTERM")
		}
	}
	c.restartMaster(t)

	type res struct {
		out client.Outcome
		err error
	}
	done := make(chan res, len(jobs))
	for _, j := range jobs {
		go func() { o, err := followAcross(ctx, t, b, c.clientAddr, j); done <- res{o, err} }()
	}
	for range jobs {
		if r := <-done; r.err != nil {
			t.Fatal(r.err)
		}
	}
	for i, j := range jobs {
		o, err := j.job.Wait(ctx)
		if err != nil {
			t.Errorf("job %d (%s): %v", i, j.job.ID(), err)
		}
		if j.results != 1 || o.Result.Status != wire.StatusOK || string(o.Stdout) != j.stdout {
			t.Errorf("job %d (%s): %d results, status %s, stdout %q", i, j.job.ID(), j.results, o.Result.Status, o.Stdout)
		}
		if i < 2 && o.Result.Attempt != 1 {
			t.Errorf("job %d (%s) ran on the slave through the restart but ended as attempt %d", i, j.job.ID(), o.Result.Attempt)
		}
	}

	// The job submitted by a process that has gone: its result, from another.
	code, out, errs = kilnCmd(t, c.env, "result", "--wait", asyncID)
	if code != 0 || out != "fast done\n" {
		t.Fatalf("kiln result --wait %s: exit %d, stdout %q, stderr %q", asyncID, code, out, errs)
	}
	// Another key cannot read it.
	mustKiln(t, "certs", "issue", "--dir", c.dir, "--role", "client", "--name", "mallory", "--out", filepath.Join(c.dir, "mallory.bundle"))
	code, out, errs = kilnCmd(t, []string{"KILN_BUNDLE=" + filepath.Join(c.dir, "mallory.bundle"), "KILN_MASTER=" + c.clientAddr}, "result", asyncID)
	if code == 0 || out != "" || !strings.Contains(errs, "no job") {
		t.Fatalf("another key read %s: exit %d, stdout %q, stderr %q", asyncID, code, out, errs)
	}
	// Ids go on: the next job's number is past every earlier one.
	code, out, _ = kilnCmd(t, c.env, "submit", fast)
	next, _ := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(out), "J"))
	if code != 0 || next != 7 {
		t.Fatalf("next id %q (exit %d), want J7", out, code)
	}
	code, out, _ = kilnCmd(t, c.env, "jobs")
	if code != 0 || len(regexp.MustCompile(`(?m)^J\d+ `).FindAllString(out, -1)) != 7 {
		t.Fatalf("kiln jobs: exit %d\n%s", code, out)
	}
}

func jobErr(ctx context.Context, j *client.Job) error {
	_, err := j.Wait(ctx)
	return err
}
