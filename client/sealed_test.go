package client

import (
	"bytes"
	"crypto/ecdh"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"kiln/certs"
	"kiln/transport/seal"
	"kiln/transport/wire"
)

// slaveOutput seals output the way a slave does: a fresh key wrapped for
// the job's ephemeral key, bound to the content key, and one sequence per
// stream. It returns the messages of both streams and the Result.
func slaveOutput(t *testing.T, js *jobSeal, job string, attempt int, stdout, stderr [][]byte) ([]wire.Output, wire.Result) {
	t.Helper()
	key := seal.NewContentKey()
	wrapped, err := seal.Wrap(key, js.priv.PublicKey().Bytes(), seal.OutputContext(js.contentKey, job, attempt))
	if err != nil {
		t.Fatal(err)
	}
	var msgs []wire.Output
	for i, chunks := range [][][]byte{stdout, stderr} {
		sq, err := seal.NewSequence(key, js.labels[i])
		if err != nil {
			t.Fatal(err)
		}
		for k, c := range append(chunks, nil) {
			m := wire.Output{JobID: job, Attempt: attempt, Stream: uint8(i + 1), Data: sq.SealNext(c, k == len(chunks))}
			if k == 0 {
				m.Key = wrapped
			}
			msgs = append(msgs, m)
		}
	}
	compile, err := seal.Seal(key, seal.LabelCompile, []byte("warning: x"))
	if err != nil {
		t.Fatal(err)
	}
	res := wire.Result{JobID: job, Attempt: attempt, Status: wire.StatusOK, Key: wrapped, CompileOutput: compile,
		WallMs: 12, StdoutBytes: 13}
	if res.Verdict, err = seal.Seal(key, seal.LabelResult, res.VerdictBytes()); err != nil {
		t.Fatal(err)
	}
	return msgs, res
}

// feed opens messages and the result like a Job does; it returns the
// stdout seen and the first error.
func feed(js *jobSeal, job string, msgs []wire.Output, res *wire.Result) (string, error) {
	var shown bytes.Buffer
	for _, m := range msgs {
		p, err := js.open(job, m)
		if err != nil {
			return shown.String(), err
		}
		if m.Stream == wire.StreamStdout {
			shown.Write(p)
		}
	}
	_, err := js.openResult(job, res)
	return shown.String(), err
}

func TestSealedOutputTampering(t *testing.T) {
	out := [][]byte{[]byte("one "), []byte("two "), []byte("three")}
	cases := []struct {
		name   string
		tamper func(msgs []wire.Output, res *wire.Result, other []wire.Output) []wire.Output
		want   error
	}{
		{"intact", func(m []wire.Output, _ *wire.Result, _ []wire.Output) []wire.Output { return m }, nil},
		{"flipped bit", func(m []wire.Output, _ *wire.Result, _ []wire.Output) []wire.Output {
			m[1].Data = bytes.Clone(m[1].Data)
			m[1].Data[0] ^= 1
			return m
		}, seal.ErrTampered},
		{"dropped chunk", func(m []wire.Output, _ *wire.Result, _ []wire.Output) []wire.Output {
			return append(m[:1:1], m[2:]...)
		}, seal.ErrTampered},
		{"reordered chunks", func(m []wire.Output, _ *wire.Result, _ []wire.Output) []wire.Output {
			m[1], m[2] = m[2], m[1]
			return m
		}, seal.ErrTampered},
		{"truncated (no last chunk)", func(m []wire.Output, _ *wire.Result, _ []wire.Output) []wire.Output {
			return append(m[:3:3], m[4:]...) // stdout's last message dropped
		}, seal.ErrTruncated},
		{"chunk spliced from another job", func(m []wire.Output, _ *wire.Result, o []wire.Output) []wire.Output {
			m[1].Data = o[1].Data
			return m
		}, seal.ErrTampered},
		{"whole output of another job", func(_ []wire.Output, res *wire.Result, o []wire.Output) []wire.Output {
			return o
		}, seal.ErrWrongKey},
		{"result unsealed", func(m []wire.Output, res *wire.Result, _ []wire.Output) []wire.Output {
			res.Key = nil
			return m
		}, seal.ErrTampered},
		{"status altered", func(m []wire.Output, res *wire.Result, _ []wire.Output) []wire.Output {
			res.Status = wire.StatusTimeLimit
			return m
		}, seal.ErrTampered},
		{"exit code altered", func(m []wire.Output, res *wire.Result, _ []wire.Output) []wire.Output {
			res.ExitCode = 3
			return m
		}, seal.ErrTampered},
		{"verdict dropped", func(m []wire.Output, res *wire.Result, _ []wire.Output) []wire.Output {
			res.Verdict = nil
			return m
		}, seal.ErrTruncated},
		{"verdict of another job", func(m []wire.Output, res *wire.Result, _ []wire.Output) []wire.Output {
			js2 := newTestJobSeal(t)
			_, r2 := slaveOutput(t, js2, "J1", 1, nil, nil)
			res.Verdict = r2.Verdict
			return m
		}, seal.ErrWrongKey},
		{"compiler output altered", func(m []wire.Output, res *wire.Result, _ []wire.Output) []wire.Output {
			res.CompileOutput = bytes.Clone(res.CompileOutput)
			res.CompileOutput[len(res.CompileOutput)-1] ^= 1
			return m
		}, seal.ErrTampered},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := newTestJobSeal(t)
			msgs, res := slaveOutput(t, js, "J1", 1, out, [][]byte{[]byte("err")})
			// Another job of the same client, same attempt, different key.
			js2 := newTestJobSeal(t)
			other, _ := slaveOutput(t, js2, "J1", 1, [][]byte{[]byte("XXXX"), []byte("YYYY"), []byte("ZZZZ")}, nil)
			shown, err := feed(js, "J1", tc.tamper(msgs, &res, other), &res)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !bytes.HasPrefix([]byte("one two three"), []byte(shown)) {
				t.Fatalf("shown %q, which is not authentic output", shown)
			}
			if tc.want == nil && (shown != "one two three" || string(res.CompileOutput) != "warning: x") {
				t.Fatalf("intact: shown %q", shown)
			}
		})
	}
}

// TestSealedOutputCutByMaster: the master ends a sealed attempt at the
// job's output cap with an unsealed output_limit Result (a hostile slave
// flooded it). The output already opened is kept and marked cut; any
// other unsealed status after output is still tampering.
func TestSealedOutputCutByMaster(t *testing.T) {
	for _, status := range []string{wire.StatusOutputLimit, wire.StatusOK, wire.StatusInternalError} {
		js := newTestJobSeal(t)
		msgs, _ := slaveOutput(t, js, "J1", 1, [][]byte{[]byte("one "), []byte("two "), []byte("three")}, nil)
		var shown bytes.Buffer
		for _, m := range msgs[:2] { // the master forwarded two messages, then cut
			p, err := js.open("J1", m)
			if err != nil {
				t.Fatal(err)
			}
			shown.Write(p)
		}
		res := wire.Result{JobID: "J1", Attempt: 1, Status: status, CompileOutput: []byte("forged")}
		cut, err := js.openResult("J1", &res)
		if status == wire.StatusOutputLimit {
			if err != nil || !cut || res.CompileOutput != nil || shown.String() != "one two " {
				t.Errorf("output_limit from the master: cut %v, err %v, compile %q, shown %q; want the prefix kept, marked cut",
					cut, err, res.CompileOutput, shown.String())
			}
			continue
		}
		if cut || !errors.Is(err, seal.ErrTampered) {
			t.Errorf("unsealed %s after output: cut %v, err %v; want tampered", status, cut, err)
		}
	}
}

func TestSealedOutputForgedByAnotherKeyHolder(t *testing.T) {
	// A master knows the client's public key and can wrap a key of its
	// own for it, but not bind it to the content key it never saw.
	js := newTestJobSeal(t)
	forger := &jobSeal{contentKey: seal.NewContentKey(), priv: js.priv, labels: js.labels}
	msgs, res := slaveOutput(t, forger, "J1", 1, [][]byte{[]byte("forged")}, nil)
	if _, err := feed(js, "J1", msgs, &res); !errors.Is(err, seal.ErrWrongKey) {
		t.Fatalf("forged output: %v, want ErrWrongKey", err)
	}
}

func TestWrapRequestChecks(t *testing.T) {
	ca, _ := certs.NewCA("ca")
	other, _ := certs.NewCA("other")
	s1, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1"})
	s2, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s2", Version: "1"})
	foreign, _ := other.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1"})
	cl, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "s1", Version: "1"})
	noKey, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1", NoSealKey: true})
	_, masterPub, _ := seal.GenerateKey()
	js := newTestJobSeal(t)
	ok := wire.WrapRequest{JobID: "J1", Slave: "s1", SealKey: s1.SealPublicKey(), SlaveCert: s1.Cert.Raw}
	// One cache for every request, the good one first: a remembered
	// certificate must not let any of the bad ones through.
	keys := newSlaveKeys(ca.Cert)
	wrapped, err := js.wrapFor(keys, "J1", ok)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := seal.Unwrap(wrapped, s1.SealKey, seal.Context("J1", "input")); err != nil || !bytes.Equal(k, js.contentKey) {
		t.Fatalf("slave cannot unwrap: %v", err)
	}
	bad := map[string]wire.WrapRequest{
		"master's own key":        {JobID: "J1", Slave: "s1", SealKey: masterPub, SlaveCert: s1.Cert.Raw},
		"certificate of another":  {JobID: "J1", Slave: "s1", SealKey: s2.SealPublicKey(), SlaveCert: s2.Cert.Raw},
		"certificate of other CA": {JobID: "J1", Slave: "s1", SealKey: foreign.SealPublicKey(), SlaveCert: foreign.Cert.Raw},
		"client certificate":      {JobID: "J1", Slave: "s1", SealKey: masterPub, SlaveCert: cl.Cert.Raw},
		"certificate without key": {JobID: "J1", Slave: "s1", SealKey: masterPub, SlaveCert: noKey.Cert.Raw},
		"no certificate":          {JobID: "J1", Slave: "s1", SealKey: s1.SealPublicKey()},
	}
	for name, req := range bad {
		if w, err := js.wrapFor(keys, "J1", req); err == nil {
			t.Errorf("%s: wrapped (%d bytes), want a refusal", name, len(w))
		}
	}
}

// TestSlaveKeysRemembered: a slave certificate checked once is not checked
// again while valid, but the same bytes under another slave's name are
// refused, and a remembered certificate is refused once it has expired.
func TestSlaveKeysRemembered(t *testing.T) {
	ca, _ := certs.NewCA("ca")
	s1, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1"})
	now := time.Now()
	keys := newSlaveKeys(ca.Cert)
	keys.now = func() time.Time { return now }
	for range 2 {
		if k, err := keys.get("s1", s1.Cert.Raw); err != nil || !bytes.Equal(k, s1.SealPublicKey()) {
			t.Fatalf("s1: %x, %v", k, err)
		}
	}
	if len(keys.m) != 1 {
		t.Fatalf("%d entries remembered, want 1", len(keys.m))
	}
	if _, err := keys.get("s2", s1.Cert.Raw); err == nil {
		t.Fatal("s1's certificate accepted for s2")
	}
	now = s1.Cert.NotAfter.Add(time.Second)
	if _, err := keys.get("s1", s1.Cert.Raw); err == nil {
		t.Fatal("an expired certificate accepted from the cache")
	}
}

// newTestJobSeal returns the sealing state of a job with random keys.
func newTestJobSeal(t *testing.T) *jobSeal {
	t.Helper()
	priv, err := seal.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return newJobSeal(priv)
}

// bundleOutputKey returns the output key pair of a bundle's private key.
func bundleOutputKey(t *testing.T, key any) *ecdh.PrivateKey {
	t.Helper()
	priv, err := outputPrivateKey(jobSecret(key))
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// TestOutputKeyUnwrappedOnce: the wrap a slave repeats on each stream's
// first message and in the Result is unwrapped once per attempt (one
// scalar multiplication, was three, each ~50 µs); another wrap of the same
// key is unwrapped and accepted; a wrap of another key in the same attempt
// is refused even though it is bound to the job's content key.
func TestOutputKeyUnwrappedOnce(t *testing.T) {
	js := newTestJobSeal(t)
	msgs, res := slaveOutput(t, js, "J1", 1, [][]byte{[]byte("out")}, [][]byte{[]byte("err")})
	before := seal.ScalarMults()
	if shown, err := feed(js, "J1", msgs, &res); err != nil || shown != "out" {
		t.Fatalf("intact: %q %v", shown, err)
	}
	if n := seal.ScalarMults() - before; n != 1 {
		t.Fatalf("opening one attempt's output took %d scalar multiplications, want 1", n)
	}

	rewrap := func(js *jobSeal, key []byte) []byte {
		w, err := seal.Wrap(key, js.priv.PublicKey().Bytes(), seal.OutputContext(js.contentKey, "J1", 1))
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// The same key wrapped twice: both wraps open, to one key.
	js = newTestJobSeal(t)
	msgs, res = slaveOutput(t, js, "J1", 1, [][]byte{[]byte("out")}, nil)
	key, err := seal.UnwrapWith(res.Key, js.priv, seal.OutputContext(js.contentKey, "J1", 1))
	if err != nil {
		t.Fatal(err)
	}
	res.Key = rewrap(js, key)
	if _, err := feed(js, "J1", msgs, &res); err != nil {
		t.Fatalf("the same key wrapped again: %v", err)
	}
	// Another key, properly bound, in the Result: refused.
	js = newTestJobSeal(t)
	msgs, res = slaveOutput(t, js, "J1", 1, [][]byte{[]byte("out")}, nil)
	res.Key = rewrap(js, seal.NewContentKey())
	if _, err := feed(js, "J1", msgs, &res); !errors.Is(err, seal.ErrTampered) {
		t.Fatalf("two output keys in one attempt: %v, want ErrTampered", err)
	}
	// And on the second stream.
	js = newTestJobSeal(t)
	msgs, res = slaveOutput(t, js, "J1", 1, [][]byte{[]byte("out")}, [][]byte{[]byte("err")})
	for i := range msgs {
		if msgs[i].Stream == wire.StreamStderr && msgs[i].Key != nil {
			msgs[i].Key = rewrap(js, seal.NewContentKey())
		}
	}
	if _, err := feed(js, "J1", msgs, &res); !errors.Is(err, seal.ErrTampered) {
		t.Fatalf("another output key on stderr: %v, want ErrTampered", err)
	}
}

// TestSubmitWrapsForSlavesSeen: once a WrapRequest for slave s1 checked
// out, the session's next sealed jobs of that language carry their key
// wrapped for s1 in the Submit, bound to a fresh nonce (not to a job id);
// a slave whose WrapRequest was refused is not wrapped for, nor is any
// slave for another language, nor anything for a master that did not
// echo the feature.
func TestSubmitWrapsForSlavesSeen(t *testing.T) {
	m := newFakeMaster(t)
	m.mu.Lock()
	m.features = []string{wire.FeatureSubmitWraps}
	m.mu.Unlock()
	c, p := m.dial(t, m.client)
	req := hello
	req.Seal = true
	run := func(req Request, id string) wire.Submit {
		t.Helper()
		got := submit(t, c, req)
		sub, _ := p.accept(id)
		got()
		return sub
	}
	wrapReq := func(job, slave string) wire.Wrapped {
		t.Helper()
		p.send(wire.MsgWrapRequest, 0, wire.WrapRequest{JobID: job, Attempt: 1, Slave: slave, SealKey: m.slave.SealPublicKey(), SlaveCert: m.slave.Cert.Raw})
		var w wire.Wrapped
		wire.Decode(p.recv(wire.MsgWrapped), &w)
		return w
	}
	if sub := run(req, "J1"); len(sub.Wraps) != 0 || sub.WrapNonce != nil {
		t.Fatalf("first job: %d wraps, nonce %x; no slave seen yet", len(sub.Wraps), sub.WrapNonce)
	}
	if w := wrapReq("J1", "s1"); w.Refused != "" {
		t.Fatal(w.Refused)
	}
	checkWraps := func(sub wire.Submit) {
		t.Helper()
		if len(sub.Wraps) != 1 || sub.Wraps[0].Slave != "s1" || len(sub.WrapNonce) != wire.WrapNonceSize {
			t.Fatalf("Submit wraps %+v, nonce %x; want one for s1", sub.Wraps, sub.WrapNonce)
		}
		ck, _, _ := jobKeys(jobSecret(m.client.Key), sub.KeyNonce)
		k, err := seal.Unwrap(sub.Wraps[0].Key, m.slave.SealKey, seal.SubmitInputContext(sub.WrapNonce))
		if err != nil || !bytes.Equal(k, ck) {
			t.Fatalf("s1 cannot open its wrap: %v", err)
		}
		if _, err := seal.Unwrap(sub.Wraps[0].Key, m.slave.SealKey, seal.InputContext("J2")); !errors.Is(err, seal.ErrWrongKey) {
			t.Fatalf("the Submit's wrap opened as a job id's: %v", err)
		}
	}
	sub2 := run(req, "J2")
	checkWraps(sub2)
	// A request naming s2 with s1's certificate is refused, and s2 is not
	// remembered.
	if w := wrapReq("J2", "s2"); w.Refused == "" {
		t.Fatal("a certificate under another name was wrapped for")
	}
	sub3 := run(req, "J3")
	checkWraps(sub3)
	if bytes.Equal(sub2.WrapNonce, sub3.WrapNonce) {
		t.Fatal("two jobs with one wrap nonce")
	}
	// The master says where each went: J3 to a slave not wrapped for.
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "J3", State: wire.StateAssigned, Slave: "s9", Attempt: 1})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.ahead.mu.Lock()
		misses := c.ahead.m["python"].misses
		c.ahead.mu.Unlock()
		if misses == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the assignment of J3 elsewhere counted %d misses, want 1", misses)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c9 := req
	c9.FileName = "a.c"
	if sub := run(c9, "J4"); len(sub.Wraps) != 0 {
		t.Fatalf("a C job wrapped for %+v, a slave seen for python", sub.Wraps)
	}

	m.mu.Lock()
	m.features = nil
	m.mu.Unlock()
	c, p = m.dial(t, m.client)
	run(req, "J5")
	wrapReq("J5", "s1")
	if sub := run(req, "J6"); len(sub.Wraps) != 0 {
		t.Fatalf("wraps %+v in a Submit to a master without the feature", sub.Wraps)
	}
}

// TestQuietCountsWhereJobsRan: a client with Config.Quiet announces the
// feature; on a session where the master echoed it there is no assigned
// state, and where a sealed job's first attempt ran, wrapped for ahead or
// not, is taken from its Result: a Result from another slave counts a
// miss, one from a slave wrapped for resets the count.
func TestQuietCountsWhereJobsRan(t *testing.T) {
	m := newFakeMaster(t)
	m.mu.Lock()
	m.features = []string{wire.FeatureSubmitWraps, wire.FeatureQuiet}
	m.mu.Unlock()
	c, p := m.dialConfig(t, Config{Bundle: m.client, Quiet: true})
	m.mu.Lock()
	features := m.hello.Features
	m.mu.Unlock()
	if !wire.HasFeature(features, wire.FeatureQuiet) {
		t.Fatalf("Hello features %v lack %q", features, wire.FeatureQuiet)
	}
	req := hello
	req.Seal = true
	run := func(id string) wire.Submit {
		t.Helper()
		got := submit(t, c, req)
		sub, _ := p.accept(id)
		got()
		return sub
	}
	run("J1")
	p.send(wire.MsgWrapRequest, 0, wire.WrapRequest{JobID: "J1", Attempt: 1, Slave: "s1", SealKey: m.slave.SealPublicKey(), SlaveCert: m.slave.Cert.Raw})
	if w := p.recv(wire.MsgWrapped); w.Type != wire.MsgWrapped {
		t.Fatal(w.Type)
	}
	misses := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c.ahead.mu.Lock()
			n := c.ahead.m["python"].misses
			c.ahead.mu.Unlock()
			if n == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d misses counted, want %d", n, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if sub := run("J2"); len(sub.Wraps) != 1 || sub.Wraps[0].Slave != "s1" {
		t.Fatalf("J2's Submit wraps %+v, want one for s1", sub.Wraps)
	}
	p.send(wire.MsgResult, 0, wire.Result{JobID: "J2", Attempt: 1, Slave: "s9", Status: wire.StatusOK})
	misses(1)
	run("J3")
	p.send(wire.MsgResult, 0, wire.Result{JobID: "J3", Attempt: 1, Slave: "s1", Status: wire.StatusOK})
	misses(0)
}

// TestAheadSlavesBound: at most n slaves per language, the most recent
// first; a slave seen again moves to the front.
func TestAheadSlavesBound(t *testing.T) {
	a := newAheadSlaves(2)
	for _, s := range []string{"s1", "s2", "s3", "s2"} {
		a.learn("python", s, []byte(s))
	}
	l := a.list("python")
	if len(l) != 2 || l[0].name != "s2" || l[1].name != "s3" {
		t.Fatalf("remembered %+v, want s2, s3", l)
	}
	if newAheadSlaves(-1).list("python") != nil || newAheadSlaves(0).n != DefaultSealAhead {
		t.Fatal("SealAhead -1 must remember nothing, 0 the default")
	}
	for i := range maxAheadLanguages + 1 {
		a.learn(strconv.Itoa(i), "s1", nil)
	}
	if len(a.m) > maxAheadLanguages {
		t.Fatalf("%d languages remembered", len(a.m))
	}
}

// TestAheadSlavesPause: a master that keeps sending the first attempts
// to slaves not wrapped for pauses wrapping ahead for aheadSkip jobs after
// aheadMissLimit of them in a row; a hit resets the count.
func TestAheadSlavesPause(t *testing.T) {
	a := newAheadSlaves(1)
	a.learn("python", "s1", []byte("c1"))
	js := &jobSeal{language: "python", ahead: []string{"s1"}}
	for range aheadMissLimit - 1 {
		a.assigned(js, "s2")
	}
	a.assigned(js, "s1") // a hit: the count starts over
	for range aheadMissLimit - 1 {
		a.assigned(js, "s3")
	}
	if len(a.list("python")) != 1 {
		t.Fatal("paused before aheadMissLimit misses in a row")
	}
	a.assigned(js, "s3")
	for i := range aheadSkip {
		if l := a.list("python"); l != nil {
			t.Fatalf("job %d of the pause wrapped for %+v", i, l)
		}
	}
	if l := a.list("python"); len(l) != 1 || l[0].name != "s1" {
		t.Fatalf("after the pause: %+v", l)
	}
	a.assigned(&jobSeal{language: "python"}, "s2") // not wrapped ahead: counts for nothing
	if a.m["python"].misses != 0 {
		t.Fatal("a job without wraps counted as a miss")
	}
}

// TestAheadSlavesConcurrent: jobs submitted while WrapRequests reorder
// the slaves (run with -race: the list a job wraps for is its own).
func TestAheadSlavesConcurrent(t *testing.T) {
	a := newAheadSlaves(4)
	names := []string{"s1", "s2", "s3", "s4"}
	for _, s := range names {
		a.learn("python", s, []byte(s))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-start
		for i := range 20000 {
			a.learn("python", names[i%4], []byte(names[i%4]))
		}
	}()
	go func() {
		defer wg.Done()
		<-start
		for range 20000 {
			l := a.list("python")
			runtime.Gosched()
			for _, s := range l {
				if len(s.name) != 2 {
					t.Errorf("slave %q", s.name)
				}
			}
		}
	}()
	close(start)
	wg.Wait()
}
