package slave

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"kiln/certs"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// startSlave runs a slave with the given grace period against m until the
// test ends, and returns it so that tests can look at what it keeps.
func startSlave(t *testing.T, m *fakeMaster, bundle *certs.Bundle, grace time.Duration, opts ...func(*Config)) *Slave {
	t.Helper()
	e, _ := newExecutor(t, &sandbox.Plain{})
	cfg := Config{
		Bundle: bundle, Master: m.ln.Addr().String(), Slots: 2, LoadInterval: 50 * time.Millisecond,
		Executor: e, BackoffMin: 20 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		FileTimeout: 5 * time.Second, Grace: grace,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
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

// TestReplayShareIsPerClient: the output a slave keeps for replay after a
// lost session was one pool for all jobs. One client key's finished jobs
// (four of 240 KiB in a pool of 1 MiB; 64 MiB of the default 256 MiB's
// with 16 MiB of output each) left no room for another client's running
// job, whose output then did not fit: the slave dropped it with the
// session, and the master ran it again from the start elsewhere. Now a
// key keeps at most its share (256 KiB here; MaxHeldPerOwner): the flood's
// second job is not held, and the honest job survives the lost session.
func TestReplayShareIsPerClient(t *testing.T) {
	needLang(t, wire.LangPython)
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	s := startSlave(t, m, sb, time.Minute, func(c *Config) { c.MaxHeldBytes, c.MaxHeldPerOwner = 1<<20, 256<<10 })
	first := m.next(t)
	var reg wire.Register
	first.expect(t, wire.MsgRegister, &reg)
	flood := []byte("import sys\nsys.stdout.write('x' * (240 << 10))\n")
	for i := range 4 {
		id := fmt.Sprintf("flood-%d", i)
		first.sendFile(t, id, wire.FileSource, flood)
		first.assign(t, wire.Assign{JobID: id, Attempt: 1, Owner: "mallory", Language: wire.LangPython, FileName: "a.py", SourceSize: int64(len(flood))})
		if res, out := first.jobResult(t, id); res.Status != wire.StatusOK || len(out[wire.StreamStdout]) != 240<<10 {
			t.Fatalf("%s: %+v, %d bytes", id, res, len(out[wire.StreamStdout]))
		}
	}
	s.keep.mu.Lock()
	mallory := s.keep.owners["mallory"]
	s.keep.mu.Unlock()
	if mallory > 256<<10 {
		t.Fatalf("one key keeps %d bytes for replay, over its share", mallory)
	}
	gate := filepath.Join(t.TempDir(), "gate")
	honest := fmt.Appendf(nil, "import os, sys, time\nsys.stdout.write('y' * (64 << 10) + '\\nstarted\\n')\nsys.stdout.flush()\nwhile not os.path.exists(%q):\n    time.sleep(0.01)\nprint('done')\n", gate)
	first.sendFile(t, "honest", wire.FileSource, honest)
	first.assign(t, wire.Assign{JobID: "honest", Attempt: 2, Owner: "alice", Language: wire.LangPython, FileName: "a.py", SourceSize: int64(len(honest))})
	waitFor(t, "the honest job's output", func() bool {
		s.keep.mu.Lock()
		defer s.keep.mu.Unlock()
		j := s.keep.jobs["honest"]
		return j != nil && (j.overflow || j.bytes > 64<<10)
	})
	first.sess.Close()

	second := m.next(t)
	second.expect(t, wire.MsgRegister, &reg)
	if !slices.ContainsFunc(reg.Held, func(h wire.HeldJob) bool { return h.JobID == "honest" && h.Attempt == 2 && !h.Done }) {
		t.Fatalf("the honest job was not held through the lost session: %+v", reg.Held)
	}
	openGate(t, gate)
	res, out := second.jobResult(t, "honest")
	if res.Status != wire.StatusOK || out[wire.StreamStdout] != strings.Repeat("y", 64<<10)+"\nstarted\ndone\n" {
		t.Fatalf("after reconnect: %+v, %d bytes of stdout", res, len(out[wire.StreamStdout]))
	}
}

// TestKeeperSharesPerOwner: a key's jobs together keep at most its
// share, the others keep theirs, and what a job let go is the key's again.
// With no session up (the master away), a job whose output no longer fits
// is dropped at once: it could only be reported with a gap.
func TestKeeperSharesPerOwner(t *testing.T) {
	k := newKeeper(time.Minute, 1000, 400, slog.New(slog.DiscardHandler))
	out := func(j *kept, n int) { k.output(j, wire.Output{JobID: j.a.JobID, Data: make([]byte, n-64)}) }
	a1 := k.add(wire.Assign{JobID: "a1", Owner: "a"}, func() {})
	a2 := k.add(wire.Assign{JobID: "a2", Owner: "a"}, func() {})
	b1 := k.add(wire.Assign{JobID: "b1", Owner: "b"}, func() {})
	out(a1, 300)
	out(a2, 200) // 500 > 400: a2 is not held
	out(b1, 400)
	if a1.overflow || !a2.overflow || b1.overflow || k.owners["a"] != 300 || k.owners["b"] != 400 || k.bytes != 700 {
		t.Fatalf("a1 %v a2 %v b1 %v, owners %v, %d bytes", a1.overflow, a2.overflow, b1.overflow, k.owners, k.bytes)
	}
	k.forget(a1)
	a3 := k.add(wire.Assign{JobID: "a3", Owner: "a"}, func() {})
	out(a3, 400)
	if a3.overflow || k.owners["a"] != 400 || k.bytes != 800 {
		t.Fatalf("after a1 let go: a3 %v, owners %v, %d bytes", a3.overflow, k.owners, k.bytes)
	}
	if !a2.abandoned {
		t.Fatal("a job over its key's share while the master is away is still held")
	}
	k.forget(a3)
	k.forget(b1)
	if len(k.owners) != 0 || k.bytes != 0 {
		t.Fatalf("all let go: owners %v, %d bytes", k.owners, k.bytes)
	}
}

// TestHeldBoundsRefused: negative replay bounds are refused.
func TestHeldBoundsRefused(t *testing.T) {
	_, sb := newPKI(t)
	e, _ := newExecutor(t, &sandbox.Plain{})
	for _, cfg := range []Config{{MaxHeldBytes: -1}, {MaxHeldPerOwner: -1}} {
		cfg.Bundle, cfg.Master, cfg.Executor = sb, "127.0.0.1:1", e
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "replay") {
			t.Errorf("%d, %d: %v", cfg.MaxHeldBytes, cfg.MaxHeldPerOwner, err)
		}
	}
}
