package slave

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"kiln/certs"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// startSlave runs a slave with the given grace period against m until the
// test ends, and returns it so that tests can look at what it keeps.
func startSlave(t *testing.T, m *fakeMaster, bundle *certs.Bundle, grace time.Duration) *Slave {
	t.Helper()
	e, _ := newExecutor(t, &sandbox.Plain{})
	s, err := New(Config{
		Bundle: bundle, Master: m.ln.Addr().String(), Slots: 2, LoadInterval: 50 * time.Millisecond,
		Executor: e, BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		FileTimeout: 5 * time.Second, Grace: grace,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	finished := make(chan struct{})
	go func() { s.Run(ctx); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s
}

// gatedJob is a Python program that prints "started", waits until the
// file gate exists, then prints "done".
func gatedJob(gate string) []byte {
	return fmt.Appendf(nil, "import os, time\nprint('started', flush=True)\nwhile not os.path.exists(%q):\n    time.sleep(0.01)\nprint('done')\n", gate)
}

// openGate lets a gated job finish.
func openGate(t *testing.T, gate string) {
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// gatedMaster welcomes slaves while open is set, and refuses them with
// shutdown (retry) otherwise.
func gatedMaster(t *testing.T, mb *certs.Bundle, open *atomic.Bool) *fakeMaster {
	return startMaster(t, mb, func(wire.Hello) *wire.Refused {
		if open.Load() {
			return nil
		}
		return &wire.Refused{Code: wire.CodeShutdown, Reason: "restarting", RetryAfterMs: 10}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startGated assigns a gated job j1 on ms and waits for its first output.
func startGated(t *testing.T, ms *masterSide, gate string) {
	var reg wire.Register
	ms.expect(t, wire.MsgRegister, &reg)
	if len(reg.Held) != 0 {
		t.Fatalf("first Register holds %+v", reg.Held)
	}
	src := gatedJob(gate)
	ms.sendFile(t, "j1", wire.FileSource, src)
	ms.assign(t, wire.Assign{JobID: "j1", Attempt: 3, Language: wire.LangPython, FileName: "a.py", SourceSize: int64(len(src))})
	var o wire.Output
	ms.expect(t, wire.MsgOutput, &o)
	if string(o.Data) != "started\n" {
		t.Fatalf("first output %q", o.Data)
	}
}

// TestKeepsRunningJobThroughLostSession: the master goes away while a job
// runs; the job goes on, and on the next session the slave names it in
// Register.Held, sends its output again from the start, then the rest
// and its Result.
func TestKeepsRunningJobThroughLostSession(t *testing.T) {
	needLang(t, wire.LangPython)
	mb, sb := newPKI(t)
	var open atomic.Bool
	open.Store(true)
	m := gatedMaster(t, mb, &open)
	startSlave(t, m, sb, time.Minute)
	gate := filepath.Join(t.TempDir(), "gate")
	first := m.next(t)
	startGated(t, first, gate)
	first.sess.Close()

	second := m.next(t)
	var reg wire.Register
	second.expect(t, wire.MsgRegister, &reg)
	if len(reg.Held) != 1 || reg.Held[0] != (wire.HeldJob{JobID: "j1", Attempt: 3}) {
		t.Fatalf("held %+v", reg.Held)
	}
	openGate(t, gate)
	res, out := second.jobResult(t, "j1")
	if res.Status != wire.StatusOK || res.Attempt != 3 || out[wire.StreamStdout] != "started\ndone\n" {
		t.Fatalf("after reconnect: %+v, stdout %q", res, out[wire.StreamStdout])
	}
}

// TestReportsJobFinishedWhileAway: the job ends while no session is up;
// its output and result are kept and reported on the next session.
func TestReportsJobFinishedWhileAway(t *testing.T) {
	needLang(t, wire.LangPython)
	mb, sb := newPKI(t)
	var open atomic.Bool
	open.Store(true)
	m := gatedMaster(t, mb, &open)
	s := startSlave(t, m, sb, time.Minute)
	gate := filepath.Join(t.TempDir(), "gate")
	first := m.next(t)
	startGated(t, first, gate)
	open.Store(false)
	first.sess.Close()
	openGate(t, gate)
	waitFor(t, "the job to end while away", func() bool {
		s.keep.mu.Lock()
		defer s.keep.mu.Unlock()
		j := s.keep.jobs["j1"]
		return j != nil && j.result != nil
	})
	open.Store(true)

	second := m.next(t)
	var reg wire.Register
	second.expect(t, wire.MsgRegister, &reg)
	if len(reg.Held) != 1 || !reg.Held[0].Done {
		t.Fatalf("held %+v", reg.Held)
	}
	res, out := second.jobResult(t, "j1")
	if res.Status != wire.StatusOK || out[wire.StreamStdout] != "started\ndone\n" {
		t.Fatalf("replayed: %+v, stdout %q", res, out[wire.StreamStdout])
	}
}

// TestGraceExpires: a master away longer than the grace period finds
// nothing held: the job was cancelled and forgotten.
func TestGraceExpires(t *testing.T) {
	needLang(t, wire.LangPython)
	mb, sb := newPKI(t)
	var open atomic.Bool
	open.Store(true)
	m := gatedMaster(t, mb, &open)
	s := startSlave(t, m, sb, 200*time.Millisecond)
	first := m.next(t)
	startGated(t, first, filepath.Join(t.TempDir(), "never"))
	open.Store(false)
	first.sess.Close()
	waitFor(t, "the grace period to end the job", func() bool {
		s.keep.mu.Lock()
		defer s.keep.mu.Unlock()
		return len(s.keep.jobs) == 0 && s.running.Load() == 0
	})
	open.Store(true)
	second := m.next(t)
	var reg wire.Register
	second.expect(t, wire.MsgRegister, &reg)
	if len(reg.Held) != 0 {
		t.Fatalf("held after the grace period: %+v", reg.Held)
	}
}

// TestUnstartedJobNotHeld: a job still waiting for its files when the
// session ends is abandoned (its files travelled on that session).
func TestUnstartedJobNotHeld(t *testing.T) {
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	s := startSlave(t, m, sb, time.Minute)
	first := m.next(t)
	var reg wire.Register
	first.expect(t, wire.MsgRegister, &reg)
	first.assign(t, wire.Assign{JobID: "nofiles", Attempt: 1, Language: wire.LangPython, FileName: "a.py", SourceSize: 10})
	waitFor(t, "the assignment", func() bool {
		s.keep.mu.Lock()
		defer s.keep.mu.Unlock()
		return len(s.keep.jobs) == 1
	})
	first.sess.Close()
	second := m.next(t)
	second.expect(t, wire.MsgRegister, &reg)
	if len(reg.Held) != 0 {
		t.Fatalf("held %+v", reg.Held)
	}
}
