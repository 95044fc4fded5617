package master_test

import (
	"testing"
	"time"

	"kiln/certs"
	"kiln/transport/wire"
)

// TestHeldJobsOfAnotherMasterCancelled: a slave that kept jobs through a
// lost session reports them at Register; this master holds no state from
// before (nothing durable yet), so it cancels them rather than let them
// take the slave's slots for work nobody waits for.
func TestHeldJobsOfAnotherMasterCancelled(t *testing.T) {
	c := newCluster(t)
	s, err := c.dial(c.issue(certs.RoleSlave, "s1", "1.0"), true, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	reg := wire.Register{Slots: 2, OS: "linux", Toolchains: []wire.Toolchain{{Language: "c", Compiler: "gcc"}},
		Held: []wire.HeldJob{{JobID: "J7", Attempt: 1}, {JobID: "J9", Attempt: 2, Done: true}}}
	if err := s.Send(wire.MsgRegister, 0, reg); err != nil {
		t.Fatal(err)
	}
	s.Send(wire.MsgResult, 0, wire.Result{JobID: "J9", Attempt: 2, Status: wire.StatusOK})
	deadline := time.After(10 * time.Second)
	var got []string
	for len(got) < 1 {
		envs := make(chan wire.Envelope, 1)
		go func() {
			e, err := s.Recv()
			if err == nil {
				envs <- e
			}
			close(envs)
		}()
		select {
		case e, ok := <-envs:
			if !ok {
				t.Fatal("session ended")
			}
			if e.Type == wire.MsgCancel {
				var cn wire.Cancel
				wire.Decode(e, &cn)
				got = append(got, cn.JobID)
			}
		case <-deadline:
			t.Fatal("no Cancel for the held running job")
		}
	}
	if got[0] != "J7" {
		t.Fatalf("cancelled %v, want J7 (J9 is done already)", got)
	}
	c.waitLog("slave registered", "held=2")
}
