package state_test

import (
	"context"
	"io"
	"testing"
	"time"

	"kiln/master/state"
	"kiln/master/state/statetest"
)

// TestLazyRidesNextEntry: a lazy command causes no write of its own: it
// goes into the entry of the next command proposed with Propose, in
// order; alone, it is written LazyDelay after it was proposed.
func TestLazyRidesNextEntry(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.LazyDelay = time.Hour
	s := open(t, cfg)
	ctx := context.Background()
	j, err := s.Apply(ctx, submit("alice", "x"))
	if err != nil {
		t.Fatal(err)
	}
	before := s.WriteStats()
	assign := s.ProposeLazy(cmd(state.KindAssign, j.ID, 1))
	time.Sleep(50 * time.Millisecond) // give a wrong proposer the time to write it alone
	if got := s.WriteStats(); got != before {
		t.Fatalf("a lazy command was written on its own: %+v then %+v", before, got)
	}
	if _, err := s.Apply(ctx, result(j.ID, 1, "ok", "out")); err != nil {
		t.Fatalf("the result after the lazy assign: %v (the assign was not applied first)", err)
	}
	if _, err := assign.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := s.WriteStats(); got.Entries != before.Entries+1 || got.Commands != before.Commands+2 {
		t.Fatalf("assign and result: %+v then %+v, want one entry of two commands", before, got)
	}

	cfg2 := testConfig(t.TempDir())
	cfg2.LazyDelay = 20 * time.Millisecond
	s2 := open(t, cfg2)
	j, err = s2.Apply(ctx, submit("alice", "x"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if rec, err := s2.ProposeLazy(cmd(state.KindAssign, j.ID, 1)).Wait(); err != nil || rec.State != state.Assigned {
		t.Fatalf("lazy assign alone: %v %+v", err, rec)
	}
	if el := time.Since(start); el < cfg2.LazyDelay {
		t.Fatalf("a lazy command alone was written after %v, before its delay of %v", el, cfg2.LazyDelay)
	}
}

// TestCloseWritesLazyCommands: Close writes the lazy commands still
// waiting, and marks the state clean: the next Open keeps every attempt.
func TestCloseWritesLazyCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.LazyDelay = time.Hour
	s := open(t, cfg)
	ctx := context.Background()
	a, _ := s.Apply(ctx, submit("alice", "a"))
	b, _ := s.Apply(ctx, submit("alice", "b"))
	s.ProposeLazy(cmd(state.KindAssign, a.ID, 1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, cfg)
	if !s.Machine().Clean() {
		// The restart command cleared it: it must not have been written.
		t.Fatal("a store closed cleanly opens not clean")
	}
	ra, _ := s.Machine().Job(a.ID)
	rb, _ := s.Machine().Job(b.ID)
	if ra.State != state.Assigned || ra.Attempt != 1 || rb.State != state.Queued || rb.Attempt != 1 {
		t.Fatalf("after a clean close: %s %s at %d, %s %s at %d; want assigned at 1, queued at 1",
			a.ID, ra.State, ra.Attempt, b.ID, rb.State, rb.Attempt)
	}
}

// TestCrashMovesQueuedJobsOn: a crash loses the lazy commands not yet
// written; the next Open moves every queued job to its next attempt (one
// whose Assign was lost may be running on a slave under the old one) and
// leaves assigned jobs as they are (their slave reports them).
func TestCrashMovesQueuedJobsOn(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.LazyDelay = time.Hour
	s := open(t, cfg)
	ctx := context.Background()
	a, _ := s.Apply(ctx, submit("alice", "a"))
	b, _ := s.Apply(ctx, submit("alice", "b"))
	if _, err := s.Apply(ctx, cmd(state.KindAssign, b.ID, 1)); err != nil {
		t.Fatal(err)
	}
	s.ProposeLazy(cmd(state.KindAssign, a.ID, 1)) // lost in the crash
	crashed := statetest.CrashImage(t, dir)

	cfg.Dir = crashed
	s2 := open(t, cfg)
	ra, _ := s2.Machine().Job(a.ID)
	rb, _ := s2.Machine().Job(b.ID)
	if ra.State != state.Queued || ra.Attempt != 2 || rb.State != state.Assigned || rb.Attempt != 1 {
		t.Fatalf("after a crash: %s %s at %d, %s %s at %d; want queued at 2, assigned at 1",
			a.ID, ra.State, ra.Attempt, b.ID, rb.State, rb.Attempt)
	}
	// The late Assign of attempt 1 (a message from before the crash) is stale.
	if _, err := s2.Apply(ctx, cmd(state.KindAssign, a.ID, 1)); err == nil {
		t.Fatal("an Assign of the lost attempt was applied")
	}
	if _, err := s2.Apply(ctx, cmd(state.KindAssign, a.ID, 2)); err != nil {
		t.Fatal(err)
	}
	// Opened again after a clean close: nothing moves.
	s2.Close()
	s3 := open(t, cfg)
	if ra, _ := s3.Machine().Job(a.ID); ra.Attempt != 2 {
		t.Fatalf("attempt %d after a clean restart, want 2", ra.Attempt)
	}
}

// TestCleanSurvivesSnapshot: the clean mark is part of the state a
// snapshot holds.
func TestCleanSurvivesSnapshot(t *testing.T) {
	m := state.NewMachine()
	m.Apply(submit("alice", "a"))
	m.Apply(&state.Command{Kind: state.KindStop, Now: t0})
	pr, pw := io.Pipe()
	go func() { _, err := m.Image().WriteTo(pw); pw.CloseWithError(err) }()
	n := state.NewMachine()
	if err := n.Restore(pr); err != nil {
		t.Fatal(err)
	}
	if !n.Clean() {
		t.Fatal("the clean mark was lost in the snapshot")
	}
	n.Apply(submit("alice", "b"))
	if n.Clean() {
		t.Fatal("clean after another command")
	}
}

// TestSnapshotThresholdFollowsState: raft's snapshot threshold is the
// number of job records held (at least the configured one), so that a large
// state is not encoded again every few thousand entries; a restart on a
// large state starts with it.
func TestSnapshotThresholdFollowsState(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SnapshotThreshold = 16
	s := open(t, cfg)
	if got := s.SnapshotThreshold(); got != 16 {
		t.Fatalf("threshold %d on an empty state, want 16", got)
	}
	runJobs(t, s, 300) // 300 records, 450 entries
	if got := s.SnapshotThreshold(); got < 200 || got > 300 {
		t.Fatalf("threshold %d with %d records, want about as many", got, s.Machine().Stats().Jobs)
	}
	s.Close()
	s = open(t, cfg)
	if got := s.SnapshotThreshold(); got != 300 {
		t.Fatalf("threshold %d after a restart with 300 records, want 300", got)
	}
}
