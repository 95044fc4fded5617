package master_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/master/state"
	"kiln/transport/wire"
)

// restartable starts masters of one cluster on one data directory: each
// call stops the previous master and closes its store, then opens the
// store again and starts a new master on it, as `kiln master --data-dir`
// after a restart.
func restartable(t *testing.T, tweak ...func(*master.Config)) func() (*cluster, *state.Store) {
	pki := authtest.New(t)
	dir := t.TempDir()
	var c *cluster
	var st *state.Store
	return func() (*cluster, *state.Store) {
		t.Helper()
		if c != nil {
			c.stop()
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		}
		st = openTestStore(t, dir)
		c = clusterOf(t, pki, append([]func(*master.Config){func(cfg *master.Config) { cfg.Store = st }}, tweak...)...)
		return c, st
	}
}

// openTestStore opens a durable state on dir with a test's timings
// (tweak changes the config first) and closes it with the test, after
// the master that uses it stops (cleanups run last first).
func openTestStore(t *testing.T, dir string, tweak ...func(*state.Config)) *state.Store {
	t.Helper()
	cfg := state.Config{Dir: dir, Cluster: "sha256:test",
		ElectionTimeout: 50 * time.Millisecond, StartTimeout: 10 * time.Second, MinFree: 1}
	for _, f := range tweak {
		f(&cfg)
	}
	st, err := state.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fresh revokes the keys of names so that the test's helpers can issue
// new ones under the same names: the slave is the same by name, which is
// what drains and quarantines go by.
func fresh(t *testing.T, c *cluster, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := c.reg.RevokeName(n, "new key for the test"); err != nil {
			t.Fatal(err)
		}
	}
}

// waitSlaveState waits until the store's record of slave name satisfies ok.
func waitSlaveState(t *testing.T, st *state.Store, name string, ok func(state.Slave) bool) {
	t.Helper()
	waitFor(t, "the durable record of "+name, func() bool {
		for _, sl := range st.Machine().Slaves() {
			if sl.Name == name && ok(sl) {
				return true
			}
		}
		return false
	})
}

// TestDrainSurvivesMasterRestart: an admin drains s1; the master stops
// and starts again on the same data directory; s1 comes back still
// drained (in the listing and `server list`), jobs go to s2 only, and
// undrain lets it work again.
func TestDrainSurvivesMasterRestart(t *testing.T) {
	start := restartable(t)
	c, st := start()
	c.fakeSlave("s1", 1, false, "python")
	wantAll(t, "drain", c.admin(certs.RoleAdmin, "ops").must("drain", "s1"), "drained s1")
	waitSlaveState(t, st, "s1", func(sl state.Slave) bool { return sl.Drained })

	c, _ = start()
	fresh(t, c, "s1", "ops")
	c.fakeSlave("s1", 1, false, "python")
	c.fakeSlave("s2", 1, false, "python")
	if sl := c.slaveInfo("s1"); !sl.Drained {
		t.Fatalf("s1 is not drained after the master restarted: %+v", sl)
	}
	ad := c.admin(certs.RoleAdmin, "ops")
	out := ad.must("server", "list")
	drained := map[string]string{} // name: the DRAINED column
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 4 {
			drained[f[0]] = f[4]
		}
	}
	if drained["NAME"] != "DRAINED" || drained["s1"] != "yes" || drained["s2"] != "no" {
		t.Fatalf("server list does not show s1 (only) drained:\n%s", out)
	}
	honest := c.honestClient("alice")
	for _, r := range honest.batch(3, "ok.py", []byte("print('honest')\n"), wire.JobLimits{}) {
		if r.err != nil || r.res.Status != wire.StatusOK || r.res.Slave != "s2" {
			t.Fatalf("job with s1 drained: %+v %+v", r.err, r.res)
		}
	}
	wantAll(t, "undrain", ad.must("undrain", "s1"), "undrained s1")
	ad.must("drain", "s2")
	if r := honest.run("ok.py", []byte("print('honest')\n"), wire.JobLimits{}); r.err != nil || r.res.Slave != "s1" {
		t.Fatalf("job after undrain: %+v %+v", r.err, r.res)
	}
}

// TestQuarantineSurvivesMasterRestart: a slave that fails every job is
// quarantined (for an hour here); the master restarts on the same data
// directory; the slave reconnects and is still quarantined, takes no job,
// and `server list` says so.
func TestQuarantineSurvivesMasterRestart(t *testing.T) {
	start := restartable(t, func(cfg *master.Config) {
		cfg.Budget.Jobs.QuarantineBase, cfg.Budget.Jobs.QuarantineMax = time.Hour, time.Hour
	})
	failAll := func(h *hostileSlave, a wire.Assign) {
		h.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusInternalError,
			SlaveFault: true, Detail: "write source: no space left on device"})
	}
	c, st := start()
	broken := c.hostileSlave("broken", 64, failAll, nil)
	c.fakeSlave("good", 1, false, "python")
	honest := c.honestClient("alice")
	// A struck slave only gets a job when the good one has no free slot, so
	// how many of a batch reach it depends on scheduling: send batches until
	// it has failed enough to be quarantined (three strikes).
	for round := 0; round < 20 && !c.slaveInfo("broken").Quarantined; round++ {
		for _, r := range honest.batch(4, "ok.py", []byte("print('honest')\n"), wire.JobLimits{}) {
			if r.err != nil || r.res.Status != wire.StatusOK || r.res.Slave != "good" {
				t.Fatalf("honest job: %+v %+v", r.err, r.res)
			}
		}
	}
	if broken.assigned() < 3 || !c.slaveInfo("broken").Quarantined {
		t.Fatalf("the broken slave was not quarantined (%d jobs): the test proves nothing", broken.assigned())
	}
	waitSlaveState(t, st, "broken", func(sl state.Slave) bool { return time.Until(sl.QuarantinedUntil) > 50*time.Minute })

	c, _ = start()
	fresh(t, c, "broken", "good", "alice")
	broken = c.hostileSlave("broken", 64, failAll, nil)
	c.fakeSlave("good", 1, false, "python")
	if sl := c.slaveInfo("broken"); !sl.Quarantined || !strings.Contains(sl.Health, "quarantined") {
		t.Fatalf("the broken slave is not quarantined after the master restarted: %+v", sl)
	}
	wantAll(t, "server list", c.admin(certs.RoleAdmin, "root").must("server", "list"), "quarantined")
	honest = c.honestClient("alice")
	for _, r := range honest.batch(4, "ok.py", []byte("print('honest')\n"), wire.JobLimits{}) {
		if r.err != nil || r.res.Status != wire.StatusOK || r.res.Slave != "good" {
			t.Fatalf("honest job after restart: %+v %+v", r.err, r.res)
		}
	}
	if n := broken.assigned(); n != 0 {
		t.Fatalf("the quarantined slave got %d jobs after the master restarted", n)
	}
}
