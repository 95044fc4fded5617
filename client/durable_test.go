package client

import (
	"bytes"
	"errors"
	"testing"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// attachOn plays the master's side of an Attach on p: it reads the Attach
// and answers att (or Error{not_found} when att is nil).
func (p *peer) answerAttach(att *wire.Attached) string {
	p.t.Helper()
	env := p.recv(wire.MsgAttach)
	var a wire.Attach
	if err := wire.Decode(env, &a); err != nil {
		p.t.Fatal(err)
	}
	if att == nil {
		p.send(wire.MsgError, env.ID, wire.Error{Code: wire.CodeNotFound, Message: "no job " + a.JobID})
	} else {
		p.send(wire.MsgAttached, env.ID, *att)
	}
	return a.JobID
}

// TestAttachSealedFromAnotherSession: a sealed job submitted by one
// session is attached from another session of the same bundle (another
// process would do the same), which derives the job's keys from the nonce
// and opens the output; a session of another key cannot.
func TestAttachSealedFromAnotherSession(t *testing.T) {
	m := newFakeMaster(t)
	c1, p1 := m.dial(t, m.client)
	req := hello
	req.Seal = true
	got := submit(t, c1, req)
	sub, _ := p1.accept("J1")
	got()
	if !sub.Sealed || len(sub.KeyNonce) != 32 {
		t.Fatalf("submit %+v", sub)
	}
	c1.Close()

	c2, p2 := m.dial(t, m.client)
	type res struct {
		j   *Job
		err error
	}
	ch := make(chan res, 1)
	go func() { j, err := c2.Attach(testCtx(t), "J1"); ch <- res{j, err} }()
	att := wire.Attached{JobID: "J1", State: wire.StateRunning, Attempt: 1, Language: wire.LangPython, Sealed: true,
		KeyNonce: sub.KeyNonce, ClientKey: sub.ClientKey}
	if id := p2.answerAttach(&att); id != "J1" {
		t.Fatalf("attached %q", id)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	// The slave's side: the same keys, from the bundle and the nonce.
	js, err := derivedSeal(jobSecret(m.client.Key), sub.KeyNonce, bundleOutputKey(t, m.client.Key))
	if err != nil {
		t.Fatal(err)
	}
	msgs, result := slaveOutput(t, js, "J1", 1, [][]byte{[]byte("hello\n")}, nil)
	for _, o := range msgs {
		p2.send(wire.MsgOutput, 0, o)
	}
	p2.send(wire.MsgResult, 0, result)
	out, err := r.j.Wait(testCtx(t))
	if err != nil || string(out.Stdout) != "hello\n" || out.Result.Status != wire.StatusOK {
		t.Fatalf("attached outcome %q %+v %v", out.Stdout, out.Result, err)
	}

	// Another key (the admin bundle) gets the same answer from a
	// careless master, and cannot open the job.
	c3, p3 := m.dial(t, m.admin)
	go func() { j, err := c3.Attach(testCtx(t), "J1"); ch <- res{j, err} }()
	p3.answerAttach(&att)
	if r := <-ch; !errors.Is(r.err, ErrNotYours) {
		t.Fatalf("another key attached: %v", r.err)
	}
	go func() { j, err := c3.Attach(testCtx(t), "J2"); ch <- res{j, err} }()
	p3.answerAttach(nil)
	var re *RequestError
	if r := <-ch; !errors.As(r.err, &re) || re.Code != wire.CodeNotFound {
		t.Fatalf("unknown job: %v", r.err)
	}
}

// TestReattachSkipsWhatWasReceived: the session is lost mid-job; on a new
// session Reattach carries the job over and the chunks the master sends
// again are not delivered twice.
func TestReattachSkipsWhatWasReceived(t *testing.T) {
	m := newFakeMaster(t)
	c1, p1 := m.dial(t, m.client)
	got := submit(t, c1, hello)
	p1.accept("J1")
	j1 := got()
	p1.send(wire.MsgOutput, 0, wire.Output{JobID: "J1", Attempt: 1, Stream: wire.StreamStdout, Seq: 0, Data: []byte("a")})
	p1.send(wire.MsgOutput, 0, wire.Output{JobID: "J1", Attempt: 1, Stream: wire.StreamStdout, Seq: 1, Data: []byte("b")})
	ev := j1.Events()
	for range 2 {
		<-ev
	}
	p1.s.Close()
	if _, err := j1.Wait(testCtx(t)); !errors.Is(err, ErrConnLost) {
		t.Fatalf("first session: %v", err)
	}

	c2, p2 := m.dial(t, m.client)
	ch := make(chan *Job, 1)
	go func() {
		j, err := c2.Reattach(testCtx(t), j1)
		if err != nil {
			t.Error(err)
		}
		ch <- j
	}()
	p2.answerAttach(&wire.Attached{JobID: "J1", State: wire.StateRunning, Attempt: 1})
	j2 := <-ch
	if j2 == nil {
		t.FailNow()
	}
	for i, d := range []string{"a", "b", "c"} {
		p2.send(wire.MsgOutput, 0, wire.Output{JobID: "J1", Attempt: 1, Stream: wire.StreamStdout, Seq: uint64(i), Data: []byte(d)})
	}
	p2.send(wire.MsgResult, 0, wire.Result{JobID: "J1", Attempt: 1, Status: wire.StatusOK})
	var events []string
	for e := range j2.Events() {
		if e.Output != nil {
			events = append(events, string(e.Output.Data))
		}
	}
	out, err := j2.Wait(testCtx(t))
	if err != nil || string(out.Stdout) != "abc" || len(events) != 1 || events[0] != "c" {
		t.Fatalf("after reattach: stdout %q, new events %q, %v", out.Stdout, events, err)
	}
}

func TestJobsList(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	type res struct {
		jobs []wire.JobSummary
		more bool
		err  error
	}
	ch := make(chan res, 1)
	go func() { j, more, err := c.Jobs(testCtx(t)); ch <- res{j, more, err} }()
	env := p.recv(wire.MsgListJobs)
	p.send(wire.MsgJobList, env.ID, wire.JobList{Jobs: []wire.JobSummary{{JobID: "J2", State: wire.StateQueued}, {JobID: "J1", State: wire.StateDone}}, Truncated: true})
	r := <-ch
	if r.err != nil || len(r.jobs) != 2 || r.jobs[0].JobID != "J2" || !r.more {
		t.Fatalf("jobs %+v", r)
	}
}

// TestWrapAheadChecksEachSlave: a sealed job submitted to run while its
// client is away has its key wrapped for each slave the master names, but
// only for certificates of the cluster CA that carry the key.
func TestWrapAheadChecksEachSlave(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	req := hello
	req.Seal, req.Away = true, true
	got := submit(t, c, req)
	sub, _ := p.accept("J1")
	env := p.recv(wire.MsgInfoRequest)
	var ir wire.InfoRequest
	wire.Decode(env, &ir)
	if ir.SealFor != wire.LangPython {
		t.Fatalf("info request %+v", ir)
	}
	p.send(wire.MsgInfo, env.ID, wire.Info{SealSlaves: []wire.SealSlave{
		{Name: "s1", Cert: m.slave.Cert.Raw},
		{Name: "s2", Cert: m.slave.Cert.Raw},   // a name its certificate does not carry
		{Name: "root", Cert: m.admin.Cert.Raw}, // not a slave
	}})
	env = p.recv(wire.MsgWraps)
	var w wire.Wraps
	wire.Decode(env, &w)
	p.send(wire.MsgAccepted, env.ID, wire.Accepted{JobID: "J1"})
	if j := got(); j.ID() != "J1" {
		t.Fatal(j.ID())
	}
	if w.JobID != "J1" || len(w.Wraps) != 1 || w.Wraps[0].Slave != "s1" {
		t.Fatalf("wraps %+v", w)
	}
	js, _ := derivedSeal(jobSecret(m.client.Key), sub.KeyNonce, bundleOutputKey(t, m.client.Key))
	key, err := seal.Unwrap(w.Wraps[0].Key, m.slave.SealKey, seal.InputContext("J1"))
	if err != nil || !bytes.Equal(key, js.contentKey) {
		t.Fatalf("the slave cannot open its wrap: %v", err)
	}
}

// TestOutputKeyPerBundle: every sealed job of a bundle has its output key
// wrapped for one key pair derived from the bundle (made once per session:
// no scalar multiplication per job), with a fresh content key and nonce
// each; a job submitted when the key pair was derived per job from its
// nonce still attaches, and a nonce that gives neither key is not ours.
func TestOutputKeyPerBundle(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	req := hello
	req.Seal = true
	var subs []wire.Submit
	var mults uint64
	for i, id := range []string{"J1", "J2"} {
		before := seal.ScalarMults()
		got := submit(t, c, req)
		sub, _ := p.accept(id)
		got()
		if i > 0 {
			mults = seal.ScalarMults() - before
		}
		subs = append(subs, sub)
	}
	want := bundleOutputKey(t, m.client.Key).PublicKey().Bytes()
	if !bytes.Equal(subs[0].ClientKey, want) || !bytes.Equal(subs[1].ClientKey, want) {
		t.Fatalf("client keys %x %x, want the bundle's %x", subs[0].ClientKey, subs[1].ClientKey, want)
	}
	if bytes.Equal(subs[0].KeyNonce, subs[1].KeyNonce) {
		t.Fatal("two jobs with one nonce")
	}
	if mults != 0 {
		t.Fatalf("the second sealed Submit took %d scalar multiplications, want 0", mults)
	}

	// A job of the per-job scheme: its client key is the second half of
	// the nonce's derivation.
	nonce := bytes.Repeat([]byte{7}, 32)
	_, legacy, _ := jobKeys(jobSecret(m.client.Key), nonce)
	lpriv, err := seal.ParsePrivateKey(legacy)
	if err != nil {
		t.Fatal(err)
	}
	c2, p2 := m.dial(t, m.client)
	type res struct {
		j   *Job
		err error
	}
	ch := make(chan res, 1)
	for _, tc := range []struct {
		name   string
		key    []byte
		refuse bool
	}{{"per-job key", lpriv.PublicKey().Bytes(), false}, {"another key", subs[0].ClientKey[:31:31], true}} {
		go func() { j, err := c2.Attach(testCtx(t), "J9"); ch <- res{j, err} }()
		p2.answerAttach(&wire.Attached{JobID: "J9", State: wire.StateRunning, Attempt: 1, Language: wire.LangPython,
			Sealed: true, KeyNonce: nonce, ClientKey: tc.key})
		r := <-ch
		if tc.refuse {
			if !errors.Is(r.err, ErrNotYours) {
				t.Fatalf("%s: %v, want ErrNotYours", tc.name, r.err)
			}
			continue
		}
		if r.err != nil {
			t.Fatalf("%s: %v", tc.name, r.err)
		}
		js, _ := derivedSeal(jobSecret(m.client.Key), nonce, lpriv)
		msgs, result := slaveOutput(t, js, "J9", 1, [][]byte{[]byte("old\n")}, nil)
		for _, o := range msgs {
			p2.send(wire.MsgOutput, 0, o)
		}
		p2.send(wire.MsgResult, 0, result)
		out, err := r.j.Wait(testCtx(t))
		if err != nil || string(out.Stdout) != "old\n" {
			t.Fatalf("%s: %q %v", tc.name, out.Stdout, err)
		}
	}
}
