package master_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/master/state"
	"kiln/master/state/statetest"
	"kiln/transport"
	"kiln/transport/wire"
)

// heldWritesCluster is a master on a durable store in dir whose log
// writes each wait for gate (the test holds it as a slow disk holds a
// write), with s1, a python slave of slots slots, registered; the slave
// sends no Load meanwhile; the store is returned too. tweak adjusts the store's configuration.
func heldWritesCluster(t *testing.T, pki *authtest.PKI, dir string, slots int, gate *sync.Mutex, tweak ...func(*state.Config)) (*cluster, *state.Store, *transport.Session, *certs.Bundle) {
	t.Helper()
	st := openTestStore(t, dir, append([]func(*state.Config){func(cfg *state.Config) {
		cfg.BeforeWrite = func() { gate.Lock(); gate.Unlock() }
	}}, tweak...)...)
	c := clusterOf(t, pki, func(cfg *master.Config) {
		cfg.Store = st
		cfg.HeartbeatInterval = time.Minute // the slave sends no Load while the test holds the writes
	})
	slaveKey := c.issue(certs.RoleSlave, "s1", "1.0")
	s1, err := c.dial(slaveKey, true, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s1.Close() })
	s1.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}}, Slots: slots, OS: "linux"})
	s1.Send(wire.MsgLoad, 0, wire.Load{Slots: slots})
	c.waitLog("slave registered", "peer=s1")
	return c, st, s1, slaveKey
}

// TestResultWriteHoldsOnlyItsClient: while a Result is being written
// (the store's writes held, as a slow disk holds them), the slave's
// session goes on: its next Result is read, and both freed slots take
// the queued jobs (the second Result shares the next log entry). Neither client hears of
// its Result before the Result is written; a crash meanwhile (the data
// directory copied while the write is held) leaves the job unfinished,
// to run again or be taken back: nothing a client saw is lost.
func TestResultWriteHoldsOnlyItsClient(t *testing.T) {
	pki := authtest.New(t)
	dir := t.TempDir()
	var gate sync.Mutex
	c, st, s1, slaveKey := heldWritesCluster(t, pki, dir, 2, &gate)
	cl, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var ids []string
	for i := uint64(1); i <= 4; i++ {
		id, e := submit(t, cl, i, "a.py", []byte("print('x')\n"))
		if e != nil {
			t.Fatal(e)
		}
		ids = append(ids, id)
	}
	a, b, queued := ids[0], ids[1], ids[2:]
	assigned := func() string {
		t.Helper()
		for {
			env := recvAny(t, s1)
			if env.Type == wire.MsgAssign {
				var as wire.Assign
				if err := wire.Decode(env, &as); err != nil {
					t.Fatal(err)
				}
				return as.JobID
			}
		}
	}
	if got := []string{assigned(), assigned()}; !(got[0] == a && got[1] == b || got[0] == b && got[1] == a) {
		t.Fatalf("assigned %v, want %s and %s", got, a, b)
	}

	gate.Lock()
	held := true
	defer func() {
		if held {
			gate.Unlock()
		}
	}()
	s1.Send(wire.MsgResult, 0, wire.Result{JobID: a, Attempt: 1, Status: wire.StatusOK})
	if got := assigned(); got != queued[0] {
		t.Fatalf("while %s's Result was written the slave got %s, want %s", a, got, queued[0])
	}
	s1.Send(wire.MsgResult, 0, wire.Result{JobID: b, Attempt: 1, Status: wire.StatusOK})
	if got := assigned(); got != queued[1] {
		t.Fatalf("while %s's Result was written the slave got %s after %s's Result, want %s", a, got, b, queued[1])
	}
	crashed := statetest.CrashImage(t, dir)
	entries := st.WriteStats().Entries
	gate.Unlock()
	held = false

	told := map[string]bool{}
	for len(told) < 2 {
		env := recvAny(t, cl)
		if env.Type != wire.MsgResult {
			continue
		}
		var r wire.Result
		if err := wire.Decode(env, &r); err != nil {
			t.Fatal(err)
		}
		if told[r.JobID] {
			t.Fatalf("a second Result for %s", r.JobID)
		}
		told[r.JobID] = true
		if rec, ok := st.Machine().Job(r.JobID); !ok || !rec.Ended() {
			t.Fatalf("the client heard of %s's Result before it was written", r.JobID)
		}
	}
	if !told[a] || !told[b] {
		t.Fatalf("results told: %v", told)
	}
	// a's entry was being written; b's Result and the Assign of the
	// queued job waited together for the next one.
	if n := st.WriteStats().Entries - entries; n > 2 {
		t.Errorf("%d log entries for two Results proposed while the first was written; want at most 2", n)
	}
	c.stop()

	st2 := openTestStore(t, crashed)
	for _, id := range []string{a, b} {
		if rec, ok := st2.Machine().Job(id); !ok || rec.Ended() {
			t.Fatalf("the crash image taken while the Results were written has %s ended (%v)", id, ok)
		}
	}
	// The master started on that image takes both jobs back from the
	// slave that ran them (its results follow), and stores one Result
	// each: the slave's second copy is stale, nothing runs again.
	c2 := clusterOf(t, pki, func(cfg *master.Config) {
		cfg.Store = st2
		cfg.HeartbeatInterval = time.Minute
	})
	s2, err := c2.dial(slaveKey, true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s2.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}},
		Slots: 4, OS: "linux", Held: []wire.HeldJob{{JobID: a, Attempt: 1, Done: true}, {JobID: b, Attempt: 1, Done: true}}})
	s2.Send(wire.MsgLoad, 0, wire.Load{Slots: 4})
	c2.waitLog("job taken back", "job="+a)
	c2.waitLog("job taken back", "job="+b)
	for range 2 {
		for _, id := range []string{a, b} {
			s2.Send(wire.MsgResult, 0, wire.Result{JobID: id, Attempt: 1, Status: wire.StatusOK, Detail: "copy"})
		}
	}
	waitFor(t, "both results written after the restart", func() bool {
		ra, _ := st2.Machine().Job(a)
		rb, _ := st2.Machine().Job(b)
		return ra.Ended() && rb.Ended()
	})
	for _, id := range []string{a, b} {
		if rec, _ := st2.Machine().Job(id); rec.Attempt != 1 || rec.Result.Attempt != 1 {
			t.Errorf("%s: attempt %d, result of attempt %d; want the one run, attempt 1", id, rec.Attempt, rec.Result.Attempt)
		}
	}
}

// TestSubmitWriteHoldsOnlyItsRequest: while a Submit is being written
// (the store's writes held), its session goes on: the next Submits are
// read and proposed (they share the next log entry) and an InfoRequest is
// answered, but no Accepted comes before its Submit is written. A crash
// meanwhile (the data directory copied while the write is held) leaves
// none of the jobs, and no client was told of any.
func TestSubmitWriteHoldsOnlyItsRequest(t *testing.T) {
	pki := authtest.New(t)
	dir := t.TempDir()
	var gate sync.Mutex
	c, st, _, _ := heldWritesCluster(t, pki, dir, 1, &gate, func(cfg *state.Config) {
		cfg.LazyDelay = time.Hour // lazy Assigns ride in the entries counted below, never in their own
	})
	cl := c.inlineClient("alice")
	defer cl.Close()

	gate.Lock()
	held := true
	defer func() {
		if held {
			gate.Unlock()
		}
	}()
	entries := st.WriteStats().Entries
	for id := uint64(1); id <= 3; id++ {
		if err := cl.Send(wire.MsgSubmit, id, inlineSubmit("a.py", []byte(fmt.Sprintf("print(%d)\n", id)), nil)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Send(wire.MsgInfoRequest, 4, wire.InfoRequest{}); err != nil {
		t.Fatal(err)
	}
	for {
		env := recvAny(t, cl)
		if env.Type == wire.MsgAccepted || env.Type == wire.MsgError {
			t.Fatalf("%v for request %d while no Submit was written", env.Type, env.ID)
		}
		if env.Type == wire.MsgInfo && env.ID == 4 {
			break
		}
	}
	crashed := statetest.CrashImage(t, dir)
	gate.Unlock()
	held = false

	for n := 0; n < 3; {
		env := recvAny(t, cl)
		if env.Type == wire.MsgError {
			t.Fatalf("request %d refused", env.ID)
		}
		if env.Type != wire.MsgAccepted {
			continue
		}
		n++
		var a wire.Accepted
		if err := wire.Decode(env, &a); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("J%d", env.ID); a.JobID != want {
			t.Errorf("request %d is %s, want %s (ids in the order of the Submits)", env.ID, a.JobID, want)
		}
		if _, ok := st.Machine().Job(a.JobID); !ok {
			t.Fatalf("request %d: Accepted %s before its record was written", env.ID, a.JobID)
		}
	}
	// The first Submit's entry was being written (with the others if
	// they came before it was cut); the others waited together for the
	// next one.
	if n := st.WriteStats().Entries - entries; n > 2 {
		t.Errorf("%d log entries for three Submits proposed while the first was written; want at most 2", n)
	}
	c.stop()

	if st2 := openTestStore(t, crashed); st2.Machine().Stats().Jobs != 0 {
		t.Fatalf("the crash image taken while the Submits were written holds %d jobs", st2.Machine().Stats().Jobs)
	}
}

// TestSubmitWrittenAfterItsSessionEnds: a client whose session ends
// while its Submit is written loses nothing: the job, written, is queued
// and runs without a session (its key may attach to it again), as a
// durable job whose client leaves.
func TestSubmitWrittenAfterItsSessionEnds(t *testing.T) {
	pki := authtest.New(t)
	var gate sync.Mutex
	c, st, s1, _ := heldWritesCluster(t, pki, t.TempDir(), 1, &gate)
	cl := c.inlineClient("alice")

	gate.Lock()
	held := true
	defer func() {
		if held {
			gate.Unlock()
		}
	}()
	if err := cl.Send(wire.MsgSubmit, 1, inlineSubmit("a.py", []byte("print(1)\n"), nil)); err != nil {
		t.Fatal(err)
	}
	if err := cl.Send(wire.MsgInfoRequest, 2, wire.InfoRequest{}); err != nil {
		t.Fatal(err)
	}
	for env := recvAny(t, cl); env.Type != wire.MsgInfo; env = recvAny(t, cl) {
	}
	cl.Close()
	waitFor(t, "alice's session dropped", func() bool { return len(c.srv.Clients()) == 0 })
	gate.Unlock()
	held = false

	for {
		env := recvAny(t, s1)
		if env.Type != wire.MsgAssign {
			continue
		}
		var a wire.Assign
		if err := wire.Decode(env, &a); err != nil {
			t.Fatal(err)
		}
		if rec, ok := st.Machine().Job(a.JobID); !ok || rec.Owner == "" {
			t.Fatalf("assigned %s, which has no record", a.JobID)
		}
		s1.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK})
		waitFor(t, "the result of the job whose client left written", func() bool {
			rec, _ := st.Machine().Job(a.JobID)
			return rec.Ended()
		})
		return
	}
}
