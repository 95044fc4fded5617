package master_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// fakeSlave registers with the master and answers each job by echoing its
// source to stdout, unless hold is set: then it keeps the job until told.
type fakeSlave struct {
	t     *testing.T
	name  string
	sess  *transport.Session
	slots int
	hold  bool

	wg      sync.WaitGroup // every goroutine of this fake; waited by the test's cleanup
	mu      sync.Mutex
	files   map[string][]byte
	jobs    chan wire.Assign
	cancels chan string
	ran     []string
	// streams counts the file streams received, inline the Assigns that
	// carried their files inline.
	streams, inline int
}

func (c *cluster) fakeSlave(name string, slots int, hold bool, langs ...string) *fakeSlave {
	c.t.Helper()
	return c.fakeSlaveWith(name, slots, hold, nil, langs...)
}

// fakeSlaveWith is fakeSlave announcing features in its Hello.
func (c *cluster) fakeSlaveWith(name string, slots int, hold bool, features []string, langs ...string) *fakeSlave {
	c.t.Helper()
	s, err := c.dialHello(c.issue(certs.RoleSlave, name, "1.0"), true, wire.Hello{Features: features})
	if err != nil {
		c.t.Fatal(err)
	}
	fs := &fakeSlave{t: c.t, name: name, sess: s, slots: slots, hold: hold, files: map[string][]byte{}, jobs: make(chan wire.Assign, 100), cancels: make(chan string, 100)}
	var tcs []wire.Toolchain
	for _, l := range langs {
		tcs = append(tcs, wire.Toolchain{Language: l, Compiler: l + " 1.0"})
	}
	if err := s.Send(wire.MsgRegister, 0, wire.Register{Toolchains: tcs, Slots: slots, OS: "linux"}); err != nil {
		c.t.Fatal(err)
	}
	s.Send(wire.MsgLoad, 0, wire.Load{Slots: slots})
	c.t.Cleanup(func() { s.Close(); fs.wg.Wait() })
	fs.spawn(fs.loop)
	fs.spawn(fs.acceptFiles)
	c.waitLog("slave registered", "peer="+name)
	return fs
}

// spawn runs f in a goroutine that the test's cleanup waits for.
func (fs *fakeSlave) spawn(f func()) {
	fs.wg.Add(1)
	go func() {
		defer fs.wg.Done()
		f()
	}()
}

// decode decodes env into v and fails the test if it does not decode.
func (fs *fakeSlave) decode(env wire.Envelope, v any) bool {
	if err := wire.Decode(env, v); err != nil {
		fs.t.Errorf("fake slave %s: decoding %v: %v", fs.name, env.Type, err)
		return false
	}
	return true
}

func (fs *fakeSlave) acceptFiles() {
	for {
		hdr, body, err := fs.sess.AcceptFile(context.Background())
		if err != nil {
			return
		}
		var buf bytes.Buffer
		buf.ReadFrom(body)
		body.Close()
		fs.mu.Lock()
		fs.files[hdr.JobID+"/"+hdr.Kind] = buf.Bytes()
		fs.streams++
		fs.mu.Unlock()
	}
}

func (fs *fakeSlave) loop() {
	fs.spawn(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-fs.sess.Done():
				return
			case <-tick.C:
				fs.sess.Send(wire.MsgLoad, 0, wire.Load{Slots: fs.slots})
			}
		}
	})
	for {
		env, err := fs.sess.Recv()
		if err != nil {
			return
		}
		if env.Type == wire.MsgCancel {
			var cn wire.Cancel
			if !fs.decode(env, &cn) {
				return
			}
			select { // a test that stopped reading must not hold the loop past the session
			case fs.cancels <- cn.JobID:
			case <-fs.sess.Done():
				return
			}
			continue
		}
		if env.Type != wire.MsgAssign {
			continue
		}
		var a wire.Assign
		if !fs.decode(env, &a) {
			return
		}
		fs.mu.Lock()
		fs.ran = append(fs.ran, a.JobID)
		if a.Inline.Size() > 0 {
			if err := wire.CheckInline(a.Inline, a.SourceSize, a.StdinSize, a.Sealed); err != nil {
				fs.t.Errorf("fake slave %s: Assign %s: %v", fs.name, a.JobID, err)
			}
			fs.inline++
		}
		if len(a.Source) > 0 {
			fs.files[a.JobID+"/source"] = a.Source
		}
		if len(a.Stdin) > 0 {
			fs.files[a.JobID+"/stdin"] = a.Stdin
		}
		fs.mu.Unlock()
		if fs.hold {
			select {
			case fs.jobs <- a:
			case <-fs.sess.Done():
				return
			}
			continue
		}
		fs.spawn(func() { fs.finish(a) })
	}
}

// finish answers a job: its source echoed on stdout, then an ok Result.
// It waits up to 2 s for the source to arrive and gives up when the
// session ends, so it never outlives its test.
func (fs *fakeSlave) finish(a wire.Assign) {
	var src []byte
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(2 * time.Second)
	for src == nil {
		fs.mu.Lock()
		src = fs.files[a.JobID+"/source"]
		fs.mu.Unlock()
		if src != nil {
			break
		}
		select {
		case <-fs.sess.Done():
			return
		case <-deadline:
			src = []byte{}
		case <-tick.C:
		}
	}
	fs.sess.Send(wire.MsgOutput, 0, wire.Output{JobID: a.JobID, Attempt: a.Attempt, Stream: wire.StreamStdout, Data: src})
	fs.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK, Language: a.Language})
}

// acceptedOrError waits for the master's answer to Submit reqID: the job
// id, or the Error.
func acceptedOrError(t *testing.T, s *transport.Session, reqID uint64) (string, *wire.Error) {
	t.Helper()
	env := recvReply(t, s, reqID)
	if env.Type == wire.MsgError {
		var e wire.Error
		wire.Decode(env, &e)
		return "", &e
	}
	var a wire.Accepted
	wire.Decode(env, &a)
	return a.JobID, nil
}

// submit sends one job from a raw client session and returns its job id.
func submit(t *testing.T, s *transport.Session, reqID uint64, file string, src []byte) (string, *wire.Error) {
	t.Helper()
	sub := wire.Submit{Language: wire.LanguageOf(file), FileName: file, SourceSize: int64(len(src))}
	if err := s.Send(wire.MsgSubmit, reqID, sub); err != nil {
		t.Fatal(err)
	}
	if len(src) > 0 {
		sum := sha256.Sum256(src)
		hdr := wire.FileHeader{JobID: strconv.FormatUint(reqID, 10), Kind: wire.FileSource, Name: file, Size: int64(len(src)), SHA256: sum[:]}
		if err := s.SendFile(context.Background(), hdr, bytes.NewReader(src)); err != nil {
			t.Fatal(err)
		}
	}
	return acceptedOrError(t, s, reqID)
}

func recvAny(t *testing.T, s *transport.Session) wire.Envelope {
	t.Helper()
	ch := make(chan wire.Envelope, 1)
	errc := make(chan error, 1)
	go func() {
		env, err := s.Recv()
		if err != nil {
			errc <- err
			return
		}
		ch <- env
	}()
	select {
	case env := <-ch:
		return env
	case err := <-errc:
		t.Fatalf("recv: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
	}
	return wire.Envelope{}
}

// collect reads a job's messages until its Result.
type jobView struct {
	states []string
	stdout bytes.Buffer
	result wire.Result
	n      int // results seen
}

func collect(t *testing.T, s *transport.Session, jobs ...string) map[string]*jobView {
	t.Helper()
	views := map[string]*jobView{}
	for _, j := range jobs {
		views[j] = &jobView{}
	}
	pending := len(jobs)
	for pending > 0 {
		env := recvAny(t, s)
		switch env.Type {
		case wire.MsgJobState:
			var st wire.JobState
			wire.Decode(env, &st)
			if v := views[st.JobID]; v != nil {
				v.states = append(v.states, st.State)
				if st.State == wire.StateRequeued {
					v.stdout.Reset()
				}
			}
		case wire.MsgOutput:
			var o wire.Output
			wire.Decode(env, &o)
			if v := views[o.JobID]; v != nil {
				v.stdout.Write(o.Data)
			}
		case wire.MsgResult:
			var r wire.Result
			wire.Decode(env, &r)
			if v := views[r.JobID]; v != nil {
				v.result = r
				v.n++
				pending--
			}
		}
	}
	return views
}

func TestJobRoundTrip(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("s1", 2, false, "python", "c")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("print('hello from python')\n")
	id, e := submit(t, cs, 1, "hello.py", src)
	if e != nil {
		t.Fatalf("submit: %+v", e)
	}
	v := collect(t, cs, id)[id]
	if v.stdout.String() != string(src) || v.result.Status != wire.StatusOK || v.result.Slave != "s1" {
		t.Fatalf("got stdout %q result %+v", v.stdout.String(), v.result)
	}
	if fmt.Sprint(v.states) != "[queued assigned running]" {
		t.Fatalf("states %v", v.states)
	}
	jobs := c.srv.Jobs()
	if len(jobs) != 1 || jobs[0].State != wire.StateDone || jobs[0].Slave != "s1" || jobs[0].Client != "alice" {
		t.Fatalf("job list %+v", jobs)
	}
}

func TestSubmitRefusals(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Limits.MaxSource = 1000 })
	c.fakeSlave("s1", 1, false, "c")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		file string
		src  []byte
		code string
	}{
		{"notes.txt", []byte("hi"), wire.CodeBadRequest},
		{"empty.c", nil, wire.CodeBadRequest},
		{"big.c", bytes.Repeat([]byte("x"), 1001), wire.CodeTooLarge},
		{"hello.java", []byte("class hello {}"), wire.CodeNoSlave},
	}
	for i, tc := range cases {
		_, e := submit(t, cs, uint64(i+1), tc.file, tc.src)
		if e == nil || e.Code != tc.code {
			t.Fatalf("%s: got %+v, want %s", tc.file, e, tc.code)
		}
	}
	// Still serving.
	id, e := submit(t, cs, 99, "ok.c", []byte("int main(){}"))
	if e != nil {
		t.Fatalf("good job after refusals: %+v", e)
	}
	collect(t, cs, id)
}

func TestQueueBound(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Limits.MaxQueue = 2 })
	fs := c.fakeSlave("s1", 1, true, "c")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 1; i <= 3; i++ { // one running, two queued
		id, e := submit(t, cs, uint64(i), "a.c", []byte("int main(){}"))
		if e != nil {
			t.Fatalf("job %d: %+v", i, e)
		}
		ids = append(ids, id)
		if i == 1 {
			<-fs.jobs
		}
	}
	_, e := submit(t, cs, 4, "a.c", []byte("int main(){}"))
	if e == nil || e.Code != wire.CodeBusy || e.RetryAfterMs <= 0 {
		t.Fatalf("fourth job: got %+v, want busy with a retry hint", e)
	}
	if n := c.srv.QueueLen(); n != 2 {
		t.Fatalf("queue length %d, want 2", n)
	}
}

// TestSlaveLossRequeues: the slave running a job dies; the job runs on the
// other slave and the client sees exactly one result.
func TestSlaveLossRequeues(t *testing.T) {
	c := newCluster(t)
	doomed := c.fakeSlave("doomed", 4, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	id, e := submit(t, cs, 1, "job.py", []byte("print(1)"))
	if e != nil {
		t.Fatalf("%+v", e)
	}
	a := <-doomed.jobs
	if a.JobID != id || a.Attempt != 1 {
		t.Fatalf("assign %+v", a)
	}
	doomed.sess.Send(wire.MsgOutput, 0, wire.Output{JobID: id, Attempt: 1, Stream: 1, Data: []byte("partial")})
	c.fakeSlave("rescuer", 4, false, "python")
	doomed.sess.Close()
	v := collect(t, cs, id)[id]
	if v.n != 1 || v.result.Slave != "rescuer" || v.result.Attempt != 2 {
		t.Fatalf("result %+v seen %d times", v.result, v.n)
	}
	if v.stdout.String() != "print(1)" {
		t.Fatalf("stdout %q: output of the lost attempt leaked", v.stdout.String())
	}
	requeued := false
	for _, s := range v.states {
		requeued = requeued || s == wire.StateRequeued
	}
	if !requeued {
		t.Fatalf("states %v lack requeued", v.states)
	}
}

// TestBurstSpreadsOverSlaves: with equal load reports, a burst is shared.
func TestBurstSpreadsOverSlaves(t *testing.T) {
	c := newCluster(t)
	a := c.fakeSlave("a", 4, true, "c")
	b := c.fakeSlave("b", 4, true, "c")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 8; i++ {
		if _, e := submit(t, cs, uint64(i), "x.c", []byte("int main(){}")); e != nil {
			t.Fatal(e)
		}
	}
	deadline := time.After(5 * time.Second)
	for len(a.jobs)+len(b.jobs) < 8 {
		select {
		case <-deadline:
			t.Fatalf("only %d+%d jobs assigned", len(a.jobs), len(b.jobs))
		case <-time.After(10 * time.Millisecond):
		}
	}
	if len(a.jobs) != 4 || len(b.jobs) != 4 {
		t.Fatalf("burst of 8 spread %d/%d", len(a.jobs), len(b.jobs))
	}
}

func TestCancelQueuedAndRunning(t *testing.T) {
	c := newCluster(t)
	fs := c.fakeSlave("s1", 1, true, "c")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	running, _ := submit(t, cs, 1, "a.c", []byte("int main(){}"))
	<-fs.jobs
	queued, _ := submit(t, cs, 2, "b.c", []byte("int main(){}"))
	cs.Send(wire.MsgCancel, 0, wire.Cancel{JobID: queued})
	v := collect(t, cs, queued)[queued]
	if v.result.Status != wire.StatusCancelled {
		t.Fatalf("queued job: %+v", v.result)
	}
	cs.Send(wire.MsgCancel, 0, wire.Cancel{JobID: running})
	select {
	case got := <-fs.cancels:
		if got != running {
			t.Fatalf("slave got cancel for %q, want %q", got, running)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel never reached the slave")
	}
}

// TestHeldBytesBudget: a client cannot make the master hold more uploaded
// bytes than its budget; past it the job is refused busy at once, and the
// budget comes back when jobs end.
func TestHeldBytesBudget(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.MaxHeldBytes = 2500 })
	fs := c.fakeSlave("s1", 1, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte("#"), 1000)
	first, e := submit(t, cs, 1, "a.py", src) // running: 1000 held
	if e != nil {
		t.Fatal(e)
	}
	a := <-fs.jobs
	if _, e := submit(t, cs, 2, "b.py", src); e != nil { // queued: 2000 held
		t.Fatal(e)
	}
	_, e = submit(t, cs, 3, "c.py", src) // would be 3000
	if e == nil || e.Code != wire.CodeBusy || !strings.Contains(e.Message, "limit") {
		t.Fatalf("third job: got %+v, want busy for the memory budget", e)
	}
	fs.spawn(func() { fs.finish(a) })
	collect(t, cs, first)
	if _, e := submit(t, cs, 4, "d.py", src); e != nil {
		t.Fatalf("after a job ended the budget should allow another: %+v", e)
	}
}

// TestHeldBytesBudgetFileFirst: a file refused for the memory budget before
// its Submit arrives still gets the client a busy answer.
func TestHeldBytesBudgetFileFirst(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.MaxHeldBytes = 500 })
	c.fakeSlave("s1", 1, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte("#"), 1000)
	for i := uint64(1); i <= 300; i++ {
		sum := sha256.Sum256(src)
		hdr := wire.FileHeader{JobID: strconv.FormatUint(i, 10), Kind: wire.FileSource, Name: "a.py", Size: int64(len(src)), SHA256: sum[:]}
		if err := cs.SendFile(context.Background(), hdr, bytes.NewReader(src)); err != nil {
			t.Fatal(err)
		}
		if err := cs.Send(wire.MsgSubmit, i, wire.Submit{Language: "python", FileName: "a.py", SourceSize: int64(len(src))}); err != nil {
			t.Fatal(err)
		}
		for {
			env := recvAny(t, cs)
			if env.ID != i {
				continue
			}
			var e wire.Error
			wire.Decode(env, &e)
			if env.Type != wire.MsgError || e.Code != wire.CodeBusy {
				t.Fatalf("job %d: got %v %+v, want busy", i, env.Type, e)
			}
			break
		}
	}
}

// TestResultWhileFilesInFlight: a slave may answer a job (here: cancelled)
// while the master is still streaming its files; the master must not read
// the job's files after finishing it.
func TestResultWhileFilesInFlight(t *testing.T) {
	c := newCluster(t)
	ss, err := c.dial(c.issue(certs.RoleSlave, "s1", "1.0"), true, "")
	if err != nil {
		t.Fatal(err)
	}
	ss.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}})
	ss.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
	c.waitLog("slave registered", "peer=s1")
	go func() {
		for {
			select {
			case <-ss.Done():
				return
			case <-time.After(100 * time.Millisecond):
				ss.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
			}
		}
	}()
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte("/* padding */\n"), 4<<20/14)
	stdin := []byte("input\n")
	cs.Send(wire.MsgSubmit, 1, wire.Submit{Language: "c", FileName: "a.c", SourceSize: int64(len(src)), StdinSize: int64(len(stdin))})
	for _, f := range []struct {
		kind string
		data []byte
	}{{wire.FileSource, src}, {wire.FileStdin, stdin}} {
		if err := cs.SendFile(context.Background(), wire.NewFileHeader("1", f.kind, "a.c", f.data), bytes.NewReader(f.data)); err != nil {
			t.Fatal(err)
		}
	}
	var a wire.Assign
	wire.Decode(recvUntil(t, ss, wire.MsgAssign), &a)
	// The master is blocked streaming the 4 MiB source: answer first.
	ss.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusCancelled, Language: "c"})
	c.waitLog("job finished", "job="+a.JobID)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for range 2 {
		hdr, body, err := ss.AcceptFile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, body)
		body.Close()
		if hdr.Kind == wire.FileStdin {
			break
		}
	}
}

// TestCancelRightAfterWrap: a client that cancels a sealed job right after
// wrapping its key must not have the Cancel overtake the Assign on the
// slave (which would drop it and run the job anyway).
func TestCancelRightAfterWrap(t *testing.T) {
	c := newCluster(t)
	b := c.issue(certs.RoleSlave, "s1", "1.0")
	ss, err := c.dial(b, true, "")
	if err != nil {
		t.Fatal(err)
	}
	ss.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}, SealKey: b.SealPublicKey()})
	ss.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
	c.waitLog("slave registered", "peer=s1", "sealing=true")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i++ {
		src := []byte("sealed bytes")
		cs.Send(wire.MsgSubmit, i, wire.Submit{Language: "c", FileName: "a.c", SourceSize: int64(len(src)), Sealed: true, ClientKey: make([]byte, 32)})
		hdr := wire.FileHeader{JobID: strconv.FormatUint(i, 10), Kind: wire.FileSource, Name: "a.c", Size: int64(len(src)), Sealed: true}
		if err := cs.SendFile(context.Background(), hdr, bytes.NewReader(src)); err != nil {
			t.Fatal(err)
		}
		var req wire.WrapRequest
		wire.Decode(recvUntil(t, cs, wire.MsgWrapRequest), &req)
		cs.Send(wire.MsgWrapped, 0, wire.Wrapped{JobID: req.JobID, Attempt: req.Attempt, WrappedKey: []byte("wrapped")})
		cs.Send(wire.MsgCancel, 0, wire.Cancel{JobID: req.JobID})
		// The slave must see the Assign, then the Cancel.
		var seen []wire.MsgType
		for len(seen) < 2 {
			env := recvAny(t, ss)
			if env.Type == wire.MsgAssign || env.Type == wire.MsgCancel {
				seen = append(seen, env.Type)
			}
		}
		if seen[0] != wire.MsgAssign {
			t.Fatalf("job %s: slave got %v: the Cancel overtook the Assign", req.JobID, seen)
		}
		ss.Send(wire.MsgResult, 0, wire.Result{JobID: req.JobID, Attempt: req.Attempt, Status: wire.StatusCancelled, Language: "c"})
		ss.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
		recvUntil(t, cs, wire.MsgResult)
	}
}

// TestSlaveLossAfterClientLeft: a job whose client has gone is not run
// again when its slave is lost: nobody waits for it.
func TestSlaveLossAfterClientLeft(t *testing.T) {
	c := newCluster(t)
	doomed := c.fakeSlave("doomed", 1, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	id, e := submit(t, cs, 1, "job.py", []byte("print(1)"))
	if e != nil {
		t.Fatalf("%+v", e)
	}
	<-doomed.jobs
	cs.Close()
	<-doomed.cancels // the slave ignores it, then dies
	other := c.fakeSlave("other", 1, true, "python")
	doomed.sess.Close()
	c.waitLog("slave disconnected", "peer=doomed")
	select {
	case a := <-other.jobs:
		t.Fatalf("job %s of a departed client ran again on another slave", a.JobID)
	case <-time.After(500 * time.Millisecond):
	}
	waitFor(t, "the job to end", func() bool {
		for _, j := range c.srv.Jobs() {
			if j.ID == id {
				return j.State == wire.StateDone && j.Status == wire.StatusCancelled
			}
		}
		return false
	})
}

// TestHeartbeatDropWhileReporting: a slave declared dead while its load
// reports still arrive is dropped without a data race on its report time.
func TestHeartbeatDropWhileReporting(t *testing.T) {
	var skew atomic.Int64
	c := newCluster(t, func(cfg *master.Config) {
		cfg.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	for i := range 5 {
		ss, err := c.dial(c.issue(certs.RoleSlave, fmt.Sprintf("s%d", i), "1.0"), true, "")
		if err != nil {
			t.Fatal(err)
		}
		ss.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}})
		go func() {
			for ss.Send(wire.MsgLoad, 0, wire.Load{Slots: 1}) == nil {
			}
		}()
	}
	waitFor(t, "five slaves", func() bool { return len(c.srv.Slaves()) == 5 })
	time.Sleep(100 * time.Millisecond)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // the clock jumps back and forth: some checks find every report an hour old
		for on := true; ; on = !on {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if on {
				skew.Store(int64(time.Hour))
			} else {
				skew.Store(0)
			}
		}
	}()
	waitFor(t, "a slave to be dropped", func() bool { return len(c.srv.Slaves()) < 5 })
}

// TestSubmitAllDrained: when every slave that runs the language is drained,
// the refusal says so instead of claiming no slave runs it.
func TestSubmitAllDrained(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("s1", 1, false, "python")
	if !c.srv.Drain("s1", "ops", true) {
		t.Fatal("drain: s1 not found")
	}
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	_, e := submit(t, cs, 1, "a.py", []byte("print(1)"))
	if e == nil || e.Code != wire.CodeNoSlave || !strings.Contains(e.Message, "drained") {
		t.Fatalf("got %+v, want no_slave saying the slaves are drained", e)
	}
}

// TestAcceptedBeforeJobMessages: the client hears Accepted for a job before
// any other message about it, even when the dispatcher runs at once.
func TestAcceptedBeforeJobMessages(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.JobsPerClient = 1000 })
	fs := c.fakeSlave("s1", 1000, false, "c")
	for range 4 { // every Load wakes the dispatcher
		fs.spawn(func() {
			for fs.sess.Send(wire.MsgLoad, 0, wire.Load{Slots: 1000}) == nil {
			}
		})
	}
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	src := []byte("int main(){}")
	accepted := map[string]bool{}
	sent := 0
	for len(accepted) < n {
		for sent < n && sent-len(accepted) < 32 {
			sent++
			i := uint64(sent)
			cs.Send(wire.MsgSubmit, i, wire.Submit{Language: "c", FileName: "a.c", SourceSize: int64(len(src))})
			hdr := wire.NewFileHeader(strconv.FormatUint(i, 10), wire.FileSource, "a.c", src)
			if err := cs.SendFile(context.Background(), hdr, bytes.NewReader(src)); err != nil {
				t.Fatal(err)
			}
		}
		env := recvAny(t, cs)
		switch env.Type {
		case wire.MsgAccepted:
			var a wire.Accepted
			wire.Decode(env, &a)
			accepted[a.JobID] = true
		case wire.MsgJobState:
			var st wire.JobState
			wire.Decode(env, &st)
			if !accepted[st.JobID] {
				t.Fatalf("JobState %s for %s arrived before its Accepted", st.State, st.JobID)
			}
		case wire.MsgError:
			var e wire.Error
			wire.Decode(env, &e)
			t.Fatalf("error %+v", e)
		}
	}
}

// TestUploadChecksumMismatch: a source whose bytes do not match the
// SHA-256 in its header is refused at once, not queued and forwarded.
func TestUploadChecksumMismatch(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("s1", 1, true, "c")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("int main(){}")
	cs.Send(wire.MsgSubmit, 1, wire.Submit{Language: "c", FileName: "a.c", SourceSize: int64(len(src))})
	sum := sha256.Sum256([]byte("something else"))
	hdr := wire.FileHeader{JobID: "1", Kind: wire.FileSource, Name: "a.c", Size: int64(len(src)), SHA256: sum[:]}
	if err := cs.SendFile(context.Background(), hdr, bytes.NewReader(src)); err != nil {
		t.Fatal(err)
	}
	env := recvAny(t, cs)
	var e wire.Error
	wire.Decode(env, &e)
	if env.Type != wire.MsgError || e.Code != wire.CodeBadRequest || !strings.Contains(e.Message, "checksum") {
		t.Fatalf("got %v %+v, want bad_request about the checksum", env.Type, e)
	}
	// The same when the file comes before its Submit (it waits for it).
	hdr.JobID = "2"
	if err := cs.SendFile(context.Background(), hdr, bytes.NewReader(src)); err != nil {
		t.Fatal(err)
	}
	cs.Send(wire.MsgSubmit, 2, wire.Submit{Language: "c", FileName: "a.c", SourceSize: int64(len(src))})
	env = recvAny(t, cs)
	wire.Decode(env, &e)
	if env.ID != 2 || env.Type != wire.MsgError || e.Code != wire.CodeBadRequest || !strings.Contains(e.Message, "checksum") {
		t.Fatalf("file first: got %v %+v, want bad_request about the checksum", env.Type, e)
	}
}

// TestRegisterTwiceRefused: what a slave announced cannot change within a
// session; a second Register is refused.
func TestRegisterTwiceRefused(t *testing.T) {
	c := newCluster(t)
	s, err := c.dial(c.issue(certs.RoleSlave, "s1", "1.0"), true, "")
	if err != nil {
		t.Fatal(err)
	}
	reg := wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}}
	s.Send(wire.MsgRegister, 0, reg)
	s.Send(wire.MsgRegister, 0, reg)
	env := recvUntil(t, s, wire.MsgRefused)
	var r wire.Refused
	if err := wire.Decode(env, &r); err != nil || r.Code != wire.CodeBadRequest || !strings.Contains(r.Reason, "already registered") {
		t.Fatalf("got %v %+v, want bad_request: already registered", err, r)
	}
}

// TestStrandedJobEnds: a queued job whose language no connected slave runs
// any more ends with a clear Result instead of waiting forever.
func TestStrandedJobEnds(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.StrandedAfter = 300 * time.Millisecond })
	busy := c.fakeSlave("s1", 1, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	running, _ := submit(t, cs, 1, "a.py", []byte("1"))
	<-busy.jobs
	queued, e := submit(t, cs, 2, "b.py", []byte("2"))
	if e != nil {
		t.Fatal(e)
	}
	busy.sess.Close() // the only python slave leaves: both jobs are queued with nowhere to go
	v := collect(t, cs, running, queued)
	for _, id := range []string{running, queued} {
		r := v[id].result
		if r.Status != wire.StatusInternalError || !strings.Contains(r.Detail, "no connected slave has run python") {
			t.Fatalf("job %s: %+v", id, r)
		}
	}
}

// TestNoHeadOfLineBlocking: a client's job whose language has a free slot
// runs at once even behind its own jobs of a language whose slaves are
// full, and those stay queued in order; every dispatch is checked to
// leave no placeable job queued (VerifyScheduler).
func TestNoHeadOfLineBlocking(t *testing.T) {
	c := newCluster(t)
	cSlave := c.fakeSlave("c1", 1, true, "c")
	py := c.fakeSlave("py", 2, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 6; i++ {
		if _, e := submit(t, cs, uint64(i), "x.c", []byte("int main(){}")); e != nil {
			t.Fatal(e)
		}
	}
	pyJob, e := submit(t, cs, 7, "x.py", []byte("print(1)"))
	if e != nil {
		t.Fatal(e)
	}
	select {
	case a := <-py.jobs:
		if a.JobID != pyJob {
			t.Fatalf("python slave got %s, want %s", a.JobID, pyJob)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the python job waited behind the C jobs")
	}
	select {
	case <-cSlave.jobs:
	case <-time.After(5 * time.Second):
		t.Fatal("the C slave got no job")
	}
	if n := len(cSlave.jobs); n != 0 {
		t.Fatalf("the 1-slot C slave got %d more jobs", n)
	}
}
