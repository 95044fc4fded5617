package master_test

// Red team of issue 15's fast paths: attacks by key holders on what the
// session-start code did not have or did not bound.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// TestHostileSlaveFlapsWithJobs: a slave key takes a job, drops its
// session and connects again at once, over and over. A lost slave's jobs
// are re-queued at the front of the queue, and a new session has never
// been assigned anything, so it is the idlest slave: the flapping slave
// got the same job back every time, its attempt rising without bound (a
// durable Requeue written each time), while the client's job never ran.
// A slave lost with jobs running is struck like any slave-side failure,
// so that it is quarantined after Budget.Jobs.QuarantineStrikes flaps.
func TestHostileSlaveFlapsWithJobs(t *testing.T) {
	c := newCluster(t)
	good := c.fakeSlave("good", 1, true, "python") // busy with the first job
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, e := submit(t, cs, 1, "busy.py", []byte("print(1)\n")); e != nil {
		t.Fatal(e)
	}
	<-good.jobs
	id, e := submit(t, cs, 2, "x.py", []byte("print(2)\n"))
	if e != nil {
		t.Fatal(e)
	}
	key := c.issue(certs.RoleSlave, "flap", "1.0")
	got := 0
	for flap := 0; flap < 10; flap++ {
		s := c.dialRetry(key)
		s.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}}, Slots: 1, OS: "linux"})
		s.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
		a, ok := nextAssign(s, 2*time.Second)
		if !ok {
			if h := c.slaveInfo("flap").Health; !strings.Contains(h, "quarantined") {
				t.Errorf("the flapping slave, given no job, is %q, want quarantined", h)
			}
			s.Close()
			break
		}
		s.Close()
		if a.JobID == id {
			got++
		}
	}
	t.Logf("the flapping slave got the job %d times", got)
	if got == 0 {
		t.Fatal("the flapping slave never got the job: the test proves nothing")
	}
	if got > 3 {
		t.Fatalf("a slave that drops its session with the job running got it back %d times; want it quarantined after 3", got)
	}
}

// dialRetry dials the slave port with b, announcing inline files (so that
// a job's Assign carries them and no file stream can fail), until the
// master admits it (the key's last session may not be gone yet).
func (c *cluster) dialRetry(b *certs.Bundle) *transport.Session {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := c.dialHello(b, true, wire.Hello{Features: []string{wire.FeatureInline}})
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextAssign returns the next Assign on s, or false after d without one.
func nextAssign(s *transport.Session, d time.Duration) (wire.Assign, bool) {
	ch := make(chan wire.Assign, 1)
	go func() {
		defer close(ch)
		for {
			env, err := s.Recv()
			if err != nil {
				return
			}
			var a wire.Assign
			if env.Type == wire.MsgAssign && wire.Decode(env, &a) == nil {
				ch <- a
				return
			}
		}
	}()
	select {
	case a, ok := <-ch:
		return a, ok
	case <-time.After(d):
		return wire.Assign{}, false // the reader ends when s is closed
	}
}

// bigWraps is a Submit's most wraps at their field limits: 64 × 1,152 B.
func bigWraps() []wire.KeyWrap {
	ws := make([]wire.KeyWrap, wire.MaxWraps)
	for i := range ws {
		ws[i] = wire.KeyWrap{Slave: fmt.Sprintf("%0*d", wire.MaxName, i),
			Key: bytes.Repeat([]byte{1}, wire.MaxKey), SealKey: bytes.Repeat([]byte{2}, wire.MaxKey)}
	}
	return ws
}

// TestHostileClientSubmitMetadataCounted: a Submit's wraps (64 of up to
// 1,152 B: 72 KiB) stay with its job while it is queued or running, and
// the session-start code counted none of it: a key's 128 jobs held 9 MiB
// beyond its upload share, all keys' 1,024 queued jobs 72 MiB beyond
// MaxHeldBytes, and the 1,000 ended jobs of the history kept theirs too
// (another 72 MiB). Now what a Submit keeps counts against the upload
// budgets like its files, and an ended job keeps no wraps.
func TestHostileClientSubmitMetadataCounted(t *testing.T) {
	const share = 1 << 20
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.HeldBytesPerClient = share })
	sealingSlave(t, c, "s1", 1) // takes one job and never answers
	cs, err := c.dial(c.issue(certs.RoleClient, "mallory", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	nonce := bytes.Repeat([]byte{9}, wire.WrapNonceSize)
	accepted, busy := 0, 0
	for id := uint64(1); id <= 40; id++ {
		submitWrapped(t, cs, id, wire.Submit{Sealed: true, Wraps: bigWraps(), WrapNonce: nonce})
		_, e := acceptedOrError(t, cs, id)
		switch {
		case e == nil:
			accepted++
		case e.Code == wire.CodeBusy:
			busy++
		default:
			t.Fatalf("Submit %d: %+v", id, e)
		}
	}
	per := int64(wire.MaxWraps * (wire.MaxName + 2*wire.MaxKey))
	t.Logf("%d Submits of %d B of wraps accepted, %d busy; %d B held", accepted, per, busy, c.srv.HeldBytes())
	if accepted == 0 {
		t.Fatal("no Submit with wraps accepted: the test proves nothing")
	}
	if held := c.srv.HeldBytes(); held < int64(accepted)*per {
		t.Fatalf("%d jobs keep %d B of wraps, %d B counted", accepted, int64(accepted)*per, held)
	}
	if int64(accepted-1)*per > share {
		t.Fatalf("%d jobs of %d B each accepted under a share of %d B", accepted, per, share)
	}
}

// TestSubmitWrapForAnotherSealKey: a client key holder wraps a job's key
// in its Submit for slave s1's name but another sealing key (one of its
// own, or of a slave since re-issued under that name). The master must
// not hand that wrap to s1, which could not open it (an internal error
// charged to nobody, or worse, a wrap for a key the CA never bound to
// s1): s1 gets a WrapRequest's answer instead. A wrap naming s1's own key
// goes in the Assign.
func TestSubmitWrapForAnotherSealKey(t *testing.T) {
	c := newCluster(t)
	b := c.issue(certs.RoleSlave, "s1", "1.0")
	ss, _ := c.dialFeatures(b, true, []string{wire.FeatureSubmitWraps})
	ss.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "python"}}, SealKey: b.SealPublicKey()})
	ss.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
	c.waitLog("slave registered", "peer=s1", "sealing=true")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	nonce := bytes.Repeat([]byte{9}, wire.WrapNonceSize)
	theirs := bytes.Repeat([]byte{4}, 32)
	wrong, right := bytes.Repeat([]byte{1}, 81), bytes.Repeat([]byte{2}, 81)
	submitWrapped(t, cs, 1, wire.Submit{Sealed: true, WrapNonce: nonce,
		Wraps: []wire.KeyWrap{{Slave: "s1", Key: wrong, SealKey: theirs}}})
	var req wire.WrapRequest
	wire.Decode(recvUntil(t, cs, wire.MsgWrapRequest), &req)
	if req.Slave != "s1" || !bytes.Equal(req.SealKey, b.SealPublicKey()) {
		t.Fatalf("WrapRequest %+v", req)
	}
	asked := bytes.Repeat([]byte{3}, 81)
	cs.Send(wire.MsgWrapped, 0, wire.Wrapped{JobID: req.JobID, Attempt: req.Attempt, WrappedKey: asked})
	var a wire.Assign
	wire.Decode(recvUntil(t, ss, wire.MsgAssign), &a)
	if !bytes.Equal(a.WrappedKey, asked) || a.WrapNonce != nil {
		t.Fatalf("Assign carries key %x nonce %x: the wrap made for another sealing key reached s1", a.WrappedKey, a.WrapNonce)
	}
	ss.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK})
	submitWrapped(t, cs, 2, wire.Submit{Sealed: true, WrapNonce: nonce,
		Wraps: []wire.KeyWrap{{Slave: "s1", Key: wrong, SealKey: theirs}, {Slave: "s1", Key: right, SealKey: b.SealPublicKey()}}})
	wire.Decode(recvUntil(t, ss, wire.MsgAssign), &a)
	if !bytes.Equal(a.WrappedKey, right) || !bytes.Equal(a.WrapNonce, nonce) {
		t.Fatalf("Assign carries key %x nonce %x, want the wrap for s1's key", a.WrappedKey, a.WrapNonce)
	}
}

// TestHostileSlaveSlots: a Register's slots must be 1-1024, and a Load's
// slot figure, which only decides when the dispatcher wakes, never lets a
// slave hold more jobs than it registered slots.
func TestHostileSlaveSlots(t *testing.T) {
	c := newCluster(t)
	for i, n := range []int{0, -1, 1025, 1 << 40} {
		s, err := c.dial(c.issue(certs.RoleSlave, fmt.Sprintf("bad%d", i), "1.0"), true, "")
		if err != nil {
			t.Fatal(err)
		}
		s.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}}, Slots: n, OS: "linux"})
		var r wire.Refused
		if err := wire.Decode(recvUntil(t, s, wire.MsgRefused), &r); err != nil || r.Code != wire.CodeBadRequest {
			t.Fatalf("Register with %d slots: %+v %v, want refused bad_request", n, r, err)
		}
	}
	greedy := c.fakeSlave("greedy", 1, true, "python")
	for _, n := range []int{1 << 40, -1, 0, 1 << 20} {
		greedy.sess.Send(wire.MsgLoad, 0, wire.Load{Slots: n})
	}
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 3; id++ {
		if _, e := submit(t, cs, id, "x.py", []byte("print(1)\n")); e != nil {
			t.Fatal(e)
		}
	}
	<-greedy.jobs
	greedy.sess.Send(wire.MsgLoad, 0, wire.Load{Slots: 1 << 40})
	d0 := c.srv.Dispatches()
	waitFor(t, "two dispatches after the Load", func() bool { return c.srv.Dispatches() >= d0+2 })
	select {
	case a := <-greedy.jobs:
		t.Fatalf("a slave of 1 slot reporting 2^40 got a second job %s", a.JobID)
	default:
	}
	if q := c.srv.QueueLen(); q != 2 {
		t.Fatalf("%d jobs queued, want 2", q)
	}
}

// TestManySmallOutputsStrikeNoSlave: an honest slave sends one Output
// message per read of the job's pipes, so a client's program that writes
// a byte at a time, pausing between writes, decides how many messages its
// attempt takes (TestProgramSetsOutputMessages in package slave). Past
// Budget.Jobs.OutputMessages the job ends output_limit, as it should; but
// the master also struck the slave, as if it had ignored a cap, so three
// such jobs of any client quarantined an honest slave, and enough of them
// every slave. The slave is told to cancel and not struck; a slave over
// the byte cap (which an honest slave enforces itself) still is.
func TestManySmallOutputsStrikeNoSlave(t *testing.T) {
	const msgs = 200
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.OutputMessages = msgs })
	ticks := func(h *hostileSlave, a wire.Assign) { // what an honest slave sends for such a program
		for i := 0; i <= msgs; i++ {
			h.sess.Send(wire.MsgOutput, 0, wire.Output{JobID: a.JobID, Attempt: a.Attempt, Stream: wire.StreamStdout, Data: []byte{'.'}})
		}
	}
	c.hostileSlave("s1", 1, ticks, nil)
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	for id := uint64(1); id <= 3; id++ {
		jobID, e := submit(t, cs, id, "ticks.py", []byte("print('.', end='', flush=True)\n"))
		if e != nil {
			t.Fatal(e)
		}
		if v := collect(t, cs, jobID)[jobID]; v.result.Status != wire.StatusOutputLimit {
			t.Fatalf("job %d: %+v, want output_limit", id, v.result)
		}
	}
	if h := c.slaveInfo("s1").Health; h != "ok" {
		t.Fatalf("the slave is %q after three jobs whose programs wrote %d small outputs each", h, msgs+1)
	}
}

// TestBatchDeadlineCoversTwoBuilds: a test batch judged by a checker
// builds the client's program and then the client's checker, each within
// the slave's compile limit (JobCompileTime's 60 s), before its cases run
// (each within its time limit and its checker's, covered by
// deadlineTimeMs). The master allowed one build: a client whose program
// and checker each compiled in most of the limit made an honest slave miss
// the deadline, so it was struck, the job ran again elsewhere and struck
// that slave too: three such batches quarantined a slave. The fake slave
// here answers at that worst case, with the budgets scaled down.
func TestBatchDeadlineCoversTwoBuilds(t *testing.T) {
	const build, grace, timeMs = time.Second, 500 * time.Millisecond, 100
	c := newCluster(t, func(cfg *master.Config) {
		cfg.Budget.Jobs.JobCompileTime, cfg.Budget.Jobs.JobGrace = build, grace
	})
	judge := c.fakeSlaveWith("judge", 1, true, []string{wire.FeatureTests}, "python")
	cs, _ := c.dialFeatures(c.issue(certs.RoleClient, "alice", "1.0"), false, []string{wire.FeatureTests})
	id, e := submitRaw(t, cs, 1, wire.Submit{Language: "python", FileName: "x.py", Tests: 1, Limits: wire.JobLimits{TimeMs: timeMs}},
		[]byte("print(input())\n"), []byte("bundle"))
	if e != nil {
		t.Fatal(e)
	}
	a := <-judge.jobs
	// Two builds, then the case (its time limit) and its checker (twice
	// that, at least 1 s): what an honest slave may take at most.
	worst := 2*build + timeMs*time.Millisecond + time.Second
	select {
	case cn := <-judge.cancels:
		t.Fatalf("job %s cancelled before an honest slave's worst case (%v)", cn, worst)
	case <-time.After(worst):
	}
	judge.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK, Language: "python",
		Tests: &wire.TestSummary{Total: 1, Ran: 1, Passed: 1, Status: wire.TestAccepted}})
	if v := collect(t, cs, id)[id]; v.result.Status != wire.StatusOK || v.result.Slave != "judge" {
		t.Fatalf("result %+v", v.result)
	}
	if h := c.slaveInfo("judge").Health; h != "ok" {
		t.Fatalf("the slave is %q after answering within its bounds", h)
	}
}

// TestVerdictsStrikeNoSlave: the verdicts of a test batch are not the
// program's output, and an honest slave sends each case's in full (up to
// a 1 KiB excerpt of the output and a 1 KiB message from the checker),
// whatever the job's output limit. The master counted them against that
// limit: a client that set a small one and sent cases that fail with some
// output got output_limit and struck the slave, three such batches
// quarantining it. Verdicts have their own bound (one per case, each
// within its message's field limit: TestHostileSlaveVerdictFlood); the
// output limit bounds output.
func TestVerdictsStrikeNoSlave(t *testing.T) {
	const cases = 20
	c := newCluster(t)
	judge := c.fakeSlaveWith("judge", 1, true, []string{wire.FeatureTests}, "python")
	cs, _ := c.dialFeatures(c.issue(certs.RoleClient, "alice", "1.0"), false, []string{wire.FeatureTests})
	for id := uint64(1); id <= 3; id++ {
		jobID, e := submitRaw(t, cs, id, wire.Submit{Language: "python", FileName: "x.py", Tests: cases, Limits: wire.JobLimits{OutputBytes: 4 << 10}},
			[]byte("print(input())\n"), []byte("bundle"))
		if e != nil {
			t.Fatal(e)
		}
		a := <-judge.jobs
		for i := range cases {
			v := wire.TestVerdict{Index: i, Status: wire.TestWrongAnswer, Detail: strings.Repeat("d", wire.MaxTestExcerpt),
				Output: bytes.Repeat([]byte("o"), wire.MaxTestExcerpt)}
			judge.sess.Send(wire.MsgTestResult, 0, wire.TestResult{JobID: a.JobID, Attempt: a.Attempt, Index: i, Data: wire.EncodeValue(&v)})
		}
		judge.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK, Language: "python",
			Tests: &wire.TestSummary{Total: cases, Ran: cases, Status: wire.TestWrongAnswer}})
		if v := collect(t, cs, jobID)[jobID]; v.result.Status != wire.StatusOK {
			t.Fatalf("batch %d: %+v", id, v.result)
		}
	}
	if h := c.slaveInfo("judge").Health; h != "ok" {
		t.Fatalf("the slave is %q after sending each case's verdict", h)
	}
}

// TestHostileSlaveVerdictFlood: verdicts have their own bound, and a
// slave past it did what no honest slave does: one verdict more than the
// batch has cases ends the job output_limit and strikes the slave.
func TestHostileSlaveVerdictFlood(t *testing.T) {
	for _, tc := range []struct {
		name        string
		count, size int
	}{{"one verdict too many", 3, 100}, {"many large verdicts", 3, 4 * wire.MaxText}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			judge := c.fakeSlaveWith("judge", 1, true, []string{wire.FeatureTests}, "python")
			cs, _ := c.dialFeatures(c.issue(certs.RoleClient, "alice", "1.0"), false, []string{wire.FeatureTests})
			jobID, e := submitRaw(t, cs, 1, wire.Submit{Language: "python", FileName: "x.py", Tests: 2}, []byte("print(input())\n"), []byte("bundle"))
			if e != nil {
				t.Fatal(e)
			}
			a := <-judge.jobs
			for i := range tc.count {
				judge.sess.Send(wire.MsgTestResult, 0, wire.TestResult{JobID: a.JobID, Attempt: a.Attempt, Index: i % 2, Data: make([]byte, tc.size)})
			}
			if v := collect(t, cs, jobID)[jobID]; v.result.Status != wire.StatusOutputLimit {
				t.Fatalf("%+v, want output_limit", v.result)
			}
			if h := c.slaveInfo("judge").Health; !strings.Contains(h, "strike") {
				t.Fatalf("the slave is %q, want struck", h)
			}
		})
	}
}

// TestInlineBurstKeepsSlave: jobs queued while no slave was free (a
// client's or several clients' backlog) go out in one dispatch when a
// slave of many slots comes. Inline, their Assigns carried 64 KiB each:
// 400 of them went past the slave's send queue bound (16 MiB) before it
// could read them, so the master dropped an honest slave as too slow,
// struck it and queued its jobs again, for the next dispatch to do the
// same. Files go inline only while they fit in half the queue; the rest
// stream, paced by the transport.
func TestInlineBurstKeepsSlave(t *testing.T) {
	const jobs = 400
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.JobsPerClient = jobs })
	busy := c.fakeSlave("busy", 1, true, "python")
	cs := c.inlineClient("alice")
	src := bytes.Repeat([]byte("#"), wire.MaxInline)
	for id := uint64(1); id <= jobs; id++ {
		if _, e := submitInline(t, cs, id, inlineSubmit("a.py", src, nil)); e != nil {
			t.Fatal(e)
		}
	}
	<-busy.jobs
	big := c.fakeSlaveWith("big", 1024, true, []string{wire.FeatureInline}, "python")
	for n := 1; n < jobs; n++ {
		select {
		case <-big.jobs:
		case <-time.After(10 * time.Second):
			t.Fatalf("the slave got %d of %d jobs", n-1, jobs-1)
		}
	}
	if strings.Contains(c.logs.String(), "peer too slow") {
		t.Fatal("the master dropped the slave as too slow")
	}
	big.mu.Lock()
	inline := big.inline
	big.mu.Unlock()
	t.Logf("%d of %d Assigns carried their files inline", inline, jobs-1)
	if h := c.slaveInfo("big").Health; h != "ok" || inline == 0 {
		t.Fatalf("slave %q, %d inline Assigns", h, inline)
	}
}
