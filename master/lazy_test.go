package master_test

import (
	"testing"
	"time"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/master/state"
	"kiln/master/state/statetest"
	"kiln/transport/wire"
)

// TestCrashLosesLazyAssign: an Assign is written lazily (with the next
// entry, or LazyDelay later), so a crash can lose it while its slave runs
// the job. The crash is the data directory copied while the Assign waits
// (LazyDelay of an hour). The master started on that copy finds the job
// queued: it must not run it again as attempt 1, the attempt the slave
// still holds (the client could mix both runs' output, which it tells
// apart only by attempt). The state moves it to attempt 2 at start; the
// slave's held attempt 1 is cancelled when it registers; attempt 2 runs
// and is the job's one Result.
func TestCrashLosesLazyAssign(t *testing.T) {
	pki := authtest.New(t)
	dir := t.TempDir()
	openStore := func(dir string) *state.Store {
		return openTestStore(t, dir, func(cfg *state.Config) { cfg.LazyDelay = time.Hour })
	}
	st := openStore(dir)
	c := clusterOf(t, pki, func(cfg *master.Config) { cfg.Store = st })
	slaveKey := c.issue(certs.RoleSlave, "s1", "1.0")
	s1, err := c.dial(slaveKey, true, "")
	if err != nil {
		t.Fatal(err)
	}
	s1.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}}, Slots: 1, OS: "linux"})
	s1.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
	c.waitLog("slave registered", "peer=s1")
	cl, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	id, e := submit(t, cl, 1, "a.py", []byte("print('x')\n"))
	if e != nil {
		t.Fatal(e)
	}
	var a wire.Assign
	for env := recvAny(t, s1); env.Type != wire.MsgAssign; env = recvAny(t, s1) {
	}
	// The master proposed the Assign before it sent it.
	if rec, _ := st.Machine().Job(id); rec.State != state.Queued {
		t.Fatalf("the Assign was written at once (%s): the test proves nothing", rec.State)
	}
	crashed := statetest.CrashImage(t, dir)
	s1.Close()
	cl.Close()
	c.stop()

	st2 := openStore(crashed)
	if rec, _ := st2.Machine().Job(id); rec.State != state.Queued || rec.Attempt != 2 {
		t.Fatalf("after the crash the job is %s at attempt %d, want queued at attempt 2", rec.State, rec.Attempt)
	}
	c2 := clusterOf(t, pki, func(cfg *master.Config) { cfg.Store = st2 })
	s1, err = c2.dial(slaveKey, true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s1.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}},
		Slots: 2, OS: "linux", Held: []wire.HeldJob{{JobID: id, Attempt: 1}}})
	s1.Send(wire.MsgLoad, 0, wire.Load{Slots: 2})
	cancelled, assigned := false, 0
	for !cancelled || assigned == 0 {
		env := recvAny(t, s1)
		switch env.Type {
		case wire.MsgCancel:
			var cn wire.Cancel
			wire.Decode(env, &cn)
			cancelled = cancelled || cn.JobID == id
		case wire.MsgAssign:
			wire.Decode(env, &a)
			if a.JobID == id {
				if a.Attempt != 2 {
					t.Fatalf("the job ran again as attempt %d, which its slave still held", a.Attempt)
				}
				assigned = a.Attempt
			}
		}
	}
	s1.Send(wire.MsgResult, 0, wire.Result{JobID: id, Attempt: 1, Status: wire.StatusOK}) // the held run's, late: stale
	s1.Send(wire.MsgResult, 0, wire.Result{JobID: id, Attempt: 2, Status: wire.StatusOK})
	waitFor(t, "the job's result written", func() bool {
		rec, _ := st2.Machine().Job(id)
		return rec.Ended()
	})
	if rec, _ := st2.Machine().Job(id); rec.State != state.Done || rec.Result.Attempt != 2 {
		t.Fatalf("record %s, result of attempt %d; want done by attempt 2", rec.State, rec.Result.Attempt)
	}
}
