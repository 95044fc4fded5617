package master_test

// Second pass of the adversarial suite (issue 10): attacks by a slave key
// holder through what it announces (Register, Load, Result), each with an
// honest client served meanwhile.

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kiln/certs"
	"kiln/master"
	"kiln/transport/wire"
)

// registeredSlave connects a slave key named name and registers reg.
func (c *cluster) registeredSlave(name string, reg wire.Register) {
	c.t.Helper()
	s, err := c.dial(c.issue(certs.RoleSlave, name, "1.0"), true, "")
	if err != nil {
		c.t.Fatal(err)
	}
	if err := s.Send(wire.MsgRegister, 0, reg); err != nil {
		c.t.Fatal(err)
	}
	s.Send(wire.MsgLoad, 0, wire.Load{Slots: reg.Slots})
	c.waitLog("slave registered", "peer="+name)
}

// infoWithin asks for Info on cs and fails unless a decodable Info
// arrives within d.
func infoWithin(t *testing.T, cs interface {
	Send(wire.MsgType, uint64, any) error
}, recv func() wire.Envelope, d time.Duration) wire.Info {
	t.Helper()
	start := time.Now()
	if err := cs.Send(wire.MsgInfoRequest, 7, wire.InfoRequest{}); err != nil {
		t.Fatal(err)
	}
	env := recv()
	var info wire.Info
	if err := wire.Decode(env, &info); err != nil {
		t.Fatalf("Info does not decode on the client: %v", err)
	}
	if el := time.Since(start); el > d {
		t.Fatalf("Info took %v (deadline %v)", el, d)
	}
	return info
}

// TestHostileSlaveInflatesInfo: slaves announce every toolchain the field
// limits allow, with as many compiler options as a Register may carry in
// all, and languages of their own. Info, which every client may ask for
// (500 a second per key), merges them: it must stay within what a client
// decodes, and cheap (before, one Info took the server lock for over
// 10 s). A Register with more options than that is refused.
func TestHostileSlaveInflatesInfo(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("good", 1, false, "python", "c")
	toolchains := func(perToolchain int) wire.Register {
		reg := wire.Register{Slots: 4, OS: "linux"}
		for i := range wire.MaxToolchains {
			opts := make([]string, perToolchain)
			for k := range opts {
				opts[k] = fmt.Sprintf("%x", i*perToolchain+k)
			}
			reg.Toolchains = append(reg.Toolchains, wire.Toolchain{Language: "python", Compiler: fmt.Sprintf("py%d", i), Options: opts})
		}
		return reg
	}
	// Over the bound: 64 toolchains of 1024 options each.
	s, err := c.dial(c.issue(certs.RoleSlave, "greedy", "1.0"), true, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Send(wire.MsgRegister, 0, toolchains(wire.MaxItems))
	var r wire.Refused
	if err := wire.Decode(recvUntil(t, s, wire.MsgRefused), &r); err != nil || r.Code != wire.CodeBadRequest {
		t.Fatalf("a Register with %d options: %+v %v, want refused bad_request", wire.MaxToolchains*wire.MaxItems, r, err)
	}
	c.registeredSlave("evil", toolchains(wire.MaxItems/wire.MaxToolchains))
	many := wire.Register{Slots: 4, OS: "linux"}
	for i := range wire.MaxToolchains {
		many.Toolchains = append(many.Toolchains, wire.Toolchain{Language: fmt.Sprintf("lang%02d", i), Compiler: "x"})
	}
	c.registeredSlave("evil2", many)
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	recv := func() wire.Envelope { return recvUntil(t, cs, wire.MsgInfo) }
	// Wall-time deadlines only catch a hang, with room for a loaded
	// machine. "Cheap" is measured in CPU time this process spent (the master,
	// the client and the fake slaves: no test runs in parallel here), which
	// a loaded machine does not inflate as it does wall time: 101 Info
	// must cost at most 5 s of CPU in all, where one used to cost over
	// 10 s.
	start, cpu0 := time.Now(), processCPU(t)
	info := infoWithin(t, cs, recv, 10*time.Second)
	var langs []string
	for _, l := range info.Languages {
		langs = append(langs, l.Language)
	}
	if !slices.Contains(langs, "c") || !slices.Contains(langs, "python") {
		t.Fatalf("the built-in languages were crowded out: %v", langs)
	}
	for range 100 {
		infoWithin(t, cs, recv, 10*time.Second)
	}
	if used := processCPU(t) - cpu0; used > 5*time.Second {
		t.Fatalf("101 Info cost %v of CPU (%v of wall time)", used, time.Since(start))
	} else {
		t.Logf("101 Info: %v of CPU, %v of wall time", used, time.Since(start))
	}
	honest := &honestClient{t: t, cs: cs, next: 1000}
	hr := honest.run("ok.c", []byte("int main(){}\n"), wire.JobLimits{}) // only the honest slave runs c
	if hr.err != nil || hr.res.Status != wire.StatusOK || hr.elapsed > 10*time.Second {
		t.Fatalf("honest job: %+v %+v after %v", hr.err, hr.res, hr.elapsed)
	}
}

// TestHostileSlaveInventsStatuses: a slave answers every job with a status
// of its own making. The status is a label of kiln_jobs_total and goes to
// the client: before, each job made a new time series (a slave seeing
// many jobs grew the master's memory without bound) and clients got
// statuses no one defined. Now an unknown status is the slave's fault: the
// job runs again elsewhere and the slave is struck.
func TestHostileSlaveInventsStatuses(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := newCluster(t, func(cfg *master.Config) { cfg.Metrics = master.NewMetrics(reg) })
	var n atomic.Int64
	liar := c.hostileSlave("liar", 1024, func(h *hostileSlave, a wire.Assign) {
		h.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt,
			Status: fmt.Sprintf("status-%d-%s", n.Add(1), strings.Repeat("x", 200))})
	}, nil)
	c.fakeSlave("good", 1, false, "python")
	honest := c.honestClient("alice")
	for _, r := range honest.batch(4, "ok.py", []byte("print('honest')\n"), wire.JobLimits{}) {
		if r.err != nil || r.res.Status != wire.StatusOK || r.res.Slave != "good" || r.elapsed > 3*time.Second {
			t.Fatalf("honest job: %+v %+v after %v", r.err, r.res, r.elapsed)
		}
	}
	if liar.assigned() == 0 {
		t.Fatal("no job went to the lying slave: the test proves nothing")
	}
	if h := c.slaveInfo("liar").Health; !strings.Contains(h, "strike") && !strings.Contains(h, "quarantined") {
		t.Fatalf("the lying slave is not struck: %q", h)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.HasPrefix(l.GetValue(), "status-") {
					t.Fatalf("%s has a label the slave made up: %q", mf.GetName(), l.GetValue())
				}
			}
		}
	}
}

// TestHostileSlaveLoadFlood: a slave sends Load as fast as it can, its
// slots going up and down, which used to wake the dispatcher every other
// message: a slave key could keep the dispatcher (and the server lock it
// takes, with the whole queue to walk) busy without end. Now a slave's
// Load wakes it at most every Budget.LoadWakeEvery.
func TestHostileSlaveLoadFlood(t *testing.T) {
	c := newCluster(t)
	s, err := c.dial(c.issue(certs.RoleSlave, "flood", "1.0"), true, "")
	if err != nil {
		t.Fatal(err)
	}
	s.Send(wire.MsgRegister, 0, wire.Register{Slots: 2, OS: "linux", Toolchains: []wire.Toolchain{{Language: "python", Compiler: "3"}}})
	c.waitLog("slave registered", "peer=flood")
	before := c.srv.Dispatches()
	start := time.Now()
	const n = 20000
	for i := range n {
		s.Send(wire.MsgLoad, 0, wire.Load{Slots: 1 + i%2})
	}
	s.Send(wire.MsgLoad, 0, wire.Load{Slots: 2, Health: "flood over"})
	waitFor(t, "the master to read the flood", func() bool { return c.slaveInfo("flood").Health == "unhealthy: flood over" })
	el := time.Since(start)
	// The 250 ms tick, plus one wake per LoadWakeEvery (100 ms), with room.
	limit := int64(2*el/(100*time.Millisecond)) + 10
	if got := c.srv.Dispatches() - before; got > limit {
		t.Fatalf("%d Loads in %v woke the dispatcher %d times (at most %d)", n, el, got, limit)
	}
	t.Logf("%d Loads in %v: %d dispatches", n, el, c.srv.Dispatches()-before)
}

// TestHostileSlaveOutgrowsServerList: a slave announces toolchain paths
// of control characters, each escaped to six bytes in the listing's JSON,
// so that `server list` outgrew a frame: the master could not send the
// reply and the admin, looking for the slave to kick, got no answer. An
// admin reply now always fits: past the bound its JSON is left out and
// its text cut, saying so.
func TestHostileSlaveOutgrowsServerList(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("good", 1, false, "python")
	reg := wire.Register{Slots: 1, OS: "linux"}
	for i := range wire.MaxToolchains {
		reg.Toolchains = append(reg.Toolchains, wire.Toolchain{Language: "python", Compiler: fmt.Sprint(i),
			Path: strings.Repeat("\x01", wire.MaxText)})
	}
	c.registeredSlave("wide", reg)
	start := time.Now()
	r, e := c.admin(certs.RoleAdmin, "root").run("server", "list")
	if e != nil || !containsAll(r.Text, []string{"good", "wide", "JSON form is left out"}) || time.Since(start) > 3*time.Second {
		t.Fatalf("server list after %v: %v\n%.500s", time.Since(start), e, r.Text)
	}
}

// processCPU is the user and system CPU time this test process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
