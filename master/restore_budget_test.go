package master_test

import (
	"bytes"
	"strings"
	"testing"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/master/state"
	"kiln/master/state/statetest"
	"kiln/transport/wire"
)

// TestRestoredJobsChargedToBudget: the files of a key's unfinished jobs
// are held in memory by a restarted master as they were before the crash
// (read back from its state), and count against the key's upload share
// (Budget.Jobs.HeldBytesPerClient) and the master's (MaxHeldBytes) as
// they did: a key whose restored jobs hold its share gets busy for more,
// where before the restart it would have, instead of holding its share
// twice.
func TestRestoredJobsChargedToBudget(t *testing.T) {
	pki := authtest.New(t)
	dir := t.TempDir()
	st := openTestStore(t, dir)
	budget := func(st *state.Store) func(*master.Config) {
		return func(cfg *master.Config) { cfg.Store, cfg.Budget.Jobs.HeldBytesPerClient = st, 2500 }
	}
	c := clusterOf(t, pki, budget(st))
	fs := c.fakeSlaveWith("s1", 1, true, []string{wire.FeatureInline}, "python")
	alice := c.issue(certs.RoleClient, "alice", "1.0")
	hello := wire.Hello{Features: []string{wire.FeatureInline}}
	cs, err := c.dialHello(alice, false, hello)
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte("#"), 1000)
	if _, e := submitInline(t, cs, 1, inlineSubmit("a.py", src, nil)); e != nil { // runs
		t.Fatal(e)
	}
	<-fs.jobs
	if _, e := submitInline(t, cs, 2, inlineSubmit("b.py", src, nil)); e != nil { // queued
		t.Fatal(e)
	}
	if _, e := submitInline(t, cs, 3, inlineSubmit("c.py", src, nil)); e == nil || e.Code != wire.CodeBusy {
		t.Fatalf("third job before the restart: got %+v, want busy for the key's share", e)
	}
	crashed := statetest.CrashImage(t, dir)
	cs.Close()
	c.stop()

	c2 := clusterOf(t, pki, budget(openTestStore(t, crashed)))
	c2.fakeSlaveWith("s2", 1, true, []string{wire.FeatureInline}, "python")
	cs, err = c2.dialHello(alice, false, hello)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, e := submitInline(t, cs, 1, inlineSubmit("c.py", src, nil)); e == nil || e.Code != wire.CodeBusy || !strings.Contains(e.Message, "this key holds") {
		t.Fatalf("after the restart, with 2000 bytes of the key's jobs restored: got %+v, want busy for the key's share", e)
	}
}
