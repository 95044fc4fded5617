package master_test

// The adversarial suite of the job side (issue 10): each test performs an
// attack as a key holder would, over mutual TLS with real keys, asserts
// the bound the master keeps, and that an honest client is served within
// a deadline meanwhile.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// honestClient runs one job at a time and measures how long each takes.
type honestClient struct {
	t    *testing.T
	cs   *transport.Session
	next uint64
}

func (c *cluster) honestClient(name string) *honestClient {
	c.t.Helper()
	cs, err := c.dial(c.issue(certs.RoleClient, name, "1.0"), false, "")
	if err != nil {
		c.t.Fatal(err)
	}
	return &honestClient{t: c.t, cs: cs, next: 1000}
}

// honestRun is what an honest job gets: its result, the output bytes it
// received, how long from Submit to Result.
type honestRun struct {
	res     wire.Result
	err     *wire.Error
	output  int64
	elapsed time.Duration
}

// run submits src as file with limits and waits for the job's Result.
func (h *honestClient) run(file string, src []byte, limits wire.JobLimits) honestRun {
	h.t.Helper()
	return h.batch(1, file, src, limits)[0]
}

// batch submits n jobs at once and waits for all their Results.
func (h *honestClient) batch(n int, file string, src []byte, limits wire.JobLimits) []honestRun {
	h.t.Helper()
	start := time.Now()
	out := make([]honestRun, n)
	byReq := map[uint64]int{}
	byJob := map[string]int{}
	for i := range n {
		h.next++
		id := h.next
		byReq[id] = i
		sub := wire.Submit{Language: wire.LanguageOf(file), FileName: file, SourceSize: int64(len(src)), Limits: limits}
		if err := h.cs.Send(wire.MsgSubmit, id, sub); err != nil {
			h.t.Fatal(err)
		}
		hdr := wire.NewFileHeader(strconv.FormatUint(id, 10), wire.FileSource, file, src)
		if err := h.cs.SendFile(context.Background(), hdr, bytes.NewReader(src)); err != nil {
			h.t.Fatal(err)
		}
	}
	for left := n; left > 0; {
		env := recvAny(h.t, h.cs)
		switch env.Type {
		case wire.MsgAccepted:
			var a wire.Accepted
			wire.Decode(env, &a)
			if i, ok := byReq[env.ID]; ok {
				byJob[a.JobID] = i
			}
		case wire.MsgError:
			var e wire.Error
			wire.Decode(env, &e)
			if i, ok := byReq[env.ID]; ok {
				out[i].err, out[i].elapsed = &e, time.Since(start)
				left--
			}
		case wire.MsgJobState:
			var st wire.JobState
			wire.Decode(env, &st)
			if i, ok := byJob[st.JobID]; ok && st.State == wire.StateRequeued {
				out[i].output = 0 // earlier output of the job is void
			}
		case wire.MsgOutput:
			var o wire.Output
			wire.Decode(env, &o)
			if i, ok := byJob[o.JobID]; ok {
				out[i].output += int64(len(o.Data))
			}
		case wire.MsgResult:
			var r wire.Result
			wire.Decode(env, &r)
			if i, ok := byJob[r.JobID]; ok {
				out[i].res, out[i].elapsed = r, time.Since(start)
				left--
			}
		}
	}
	return out
}

// mustRunOK runs an honest job and fails the test unless it ends ok
// within d.
func (h *honestClient) mustRunOK(d time.Duration) time.Duration {
	h.t.Helper()
	r := h.run("ok.py", []byte("print('honest')\n"), wire.JobLimits{})
	if r.err != nil || r.res.Status != wire.StatusOK || r.elapsed > d {
		h.t.Fatalf("honest job: error %+v result %+v after %v (deadline %v)", r.err, r.res, r.elapsed, d)
	}
	return r.elapsed
}

// hostileSlave is a slave key holder that answers Assigns its own way.
type hostileSlave struct {
	t       *testing.T
	sess    *transport.Session
	bundle  *certs.Bundle
	wg      sync.WaitGroup
	mu      sync.Mutex
	cancels []string
	assigns []wire.Assign
}

// hostileSlave registers name with slots for python (announcing its
// sealing key) and calls onAssign for every Assign (in a goroutine of its
// own) and onFile for every file stream (nil: read and drop it).
func (c *cluster) hostileSlave(name string, slots int, onAssign func(*hostileSlave, wire.Assign), onFile func(wire.FileHeader, io.ReadCloser)) *hostileSlave {
	c.t.Helper()
	b := c.issue(certs.RoleSlave, name, "1.0")
	s, err := c.dial(b, true, "")
	if err != nil {
		c.t.Fatal(err)
	}
	h := &hostileSlave{t: c.t, sess: s, bundle: b}
	reg := wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 3"}}, Slots: slots, OS: "linux",
		SealKey: b.SealPublicKey()}
	if err := s.Send(wire.MsgRegister, 0, reg); err != nil {
		c.t.Fatal(err)
	}
	s.Send(wire.MsgLoad, 0, wire.Load{Slots: slots})
	c.t.Cleanup(func() { s.Close(); h.wg.Wait() })
	if onFile == nil {
		onFile = func(_ wire.FileHeader, body io.ReadCloser) { io.Copy(io.Discard, body) }
	}
	h.spawn(func() {
		for {
			hdr, body, err := s.AcceptFile(context.Background())
			if err != nil {
				return
			}
			h.spawn(func() { defer body.Close(); onFile(hdr, body) })
		}
	})
	h.spawn(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.Done():
				return
			case <-tick.C:
				s.Send(wire.MsgLoad, 0, wire.Load{Slots: slots})
			}
		}
	})
	h.spawn(func() {
		for {
			env, err := s.Recv()
			if err != nil {
				return
			}
			switch env.Type {
			case wire.MsgCancel:
				var cn wire.Cancel
				wire.Decode(env, &cn)
				h.mu.Lock()
				h.cancels = append(h.cancels, cn.JobID)
				h.mu.Unlock()
			case wire.MsgAssign:
				var a wire.Assign
				wire.Decode(env, &a)
				h.mu.Lock()
				h.assigns = append(h.assigns, a)
				h.mu.Unlock()
				if onAssign != nil {
					h.spawn(func() { onAssign(h, a) })
				}
			}
		}
	})
	c.waitLog("slave registered", "peer="+name)
	return h
}

func (h *hostileSlave) spawn(f func()) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		f()
	}()
}

func (h *hostileSlave) cancelled() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.cancels...)
}

func (h *hostileSlave) assigned() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.assigns)
}

// slaveInfo returns the master's listing of slave name.
func (c *cluster) slaveInfo(name string) master.SlaveInfo {
	for _, sl := range c.srv.Slaves() {
		if sl.Name == name {
			return sl
		}
	}
	c.t.Fatalf("slave %s not listed", name)
	return master.SlaveInfo{}
}

// stalledFile opens a file stream for request id claiming size bytes and
// sends none until the returned stop is called.
func stalledFile(t *testing.T, s *transport.Session, id uint64, size int64) (stop func()) {
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		hdr := wire.FileHeader{JobID: strconv.FormatUint(id, 10), Kind: wire.FileSource, Name: "a.py", Size: size,
			SHA256: make([]byte, sha256.Size)}
		s.SendFile(ctx, hdr, pr)
	}()
	return func() { cancel(); pw.Close(); <-done }
}

// TestHostileStalledUploads (issue 10, item 2): sessions of one client
// key open uploads that claim the largest source and send nothing. The
// master charges only bytes that arrived, closes each stream after the
// idle deadline, and an honest client is served throughout.
func TestHostileStalledUploads(t *testing.T) {
	const size = 1 << 20
	c := newCluster(t, func(cfg *master.Config) {
		cfg.Limits.MaxSource = size
		cfg.MaxHeldBytes = 4 * size // the declared sizes of four stalled uploads would fill it
		cfg.Budget.Jobs.UploadIdle = 400 * time.Millisecond
	})
	c.fakeSlave("good", 4, false, "python")
	honest := c.honestClient("alice")
	bad := c.issue(certs.RoleClient, "mallory", "1.0")
	var stops []func()
	var sessions []*transport.Session
	for i := range 8 {
		s, err := c.dial(bad, false, "")
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
		id := uint64(i + 1)
		s.Send(wire.MsgSubmit, id, wire.Submit{Language: "python", FileName: "a.py", SourceSize: size})
		stops = append(stops, stalledFile(t, s, id, size))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	c.waitLog("peer=mallory", "msg=\"upload refused\"", "no bytes for")
	for range 3 {
		honest.mustRunOK(2 * time.Second)
		if held := c.srv.HeldBytes(); held > 8*64<<10 {
			t.Fatalf("the master holds %d bytes for uploads that sent none", held)
		}
	}
	// Every stalled upload is answered and lets go of what it held.
	for _, s := range sessions {
		env := recvUntil(t, s, wire.MsgError)
		var e wire.Error
		wire.Decode(env, &e)
		if !strings.Contains(e.Message, "no bytes for") {
			t.Fatalf("stalled upload answered %+v", e)
		}
	}
	waitFor(t, "held bytes back to 0", func() bool { return c.srv.HeldBytes() == 0 })
}

// TestHostileUploadsWithoutSubmit (items 3 and 7): complete files with no
// Submit, and files of refused Submits, are closed unread: they hold
// nothing, and a late Submit for one is answered at once.
func TestHostileUploadsWithoutSubmit(t *testing.T) {
	const size = 256 << 10
	c := newCluster(t, func(cfg *master.Config) {
		cfg.MaxHeldBytes = 2 * size
		cfg.Limits.MaxSource = size
		cfg.Budget.Jobs.SubmitWait = 200 * time.Millisecond
	})
	c.fakeSlave("good", 4, false, "python")
	honest := c.honestClient("alice")
	bad := c.issue(certs.RoleClient, "mallory", "1.0")
	src := bytes.Repeat([]byte("#"), size)
	var sessions []*transport.Session
	for range 2 {
		s, err := c.dial(bad, false, "")
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
		for i := range 16 {
			hdr := wire.NewFileHeader(strconv.Itoa(i+1), wire.FileSource, "a.py", src)
			go s.SendFile(context.Background(), hdr, bytes.NewReader(src))
		}
		// A refused Submit (its source is over the limit), then its file.
		s.Send(wire.MsgSubmit, 100, wire.Submit{Language: "python", FileName: "a.py", SourceSize: 2 * size})
		big := bytes.Repeat([]byte("#"), 2*size)
		go s.SendFile(context.Background(), wire.NewFileHeader("100", wire.FileSource, "a.py", big), bytes.NewReader(big))
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if held := c.srv.HeldBytes(); held != 0 {
			t.Fatalf("the master holds %d bytes of files no Submit claimed", held)
		}
		honest.mustRunOK(2 * time.Second)
	}
	waitFor(t, "every file without a Submit refused", func() bool {
		return strings.Count(c.logs.String(), "no Submit for this file") >= 32
	})
	sessions[0].Send(wire.MsgSubmit, 1, wire.Submit{Language: "python", FileName: "a.py", SourceSize: size})
	for {
		env := recvUntil(t, sessions[0], wire.MsgError)
		if env.ID != 1 {
			continue
		}
		var e wire.Error
		wire.Decode(env, &e)
		if !strings.Contains(e.Message, "before the Submit") {
			t.Fatalf("late Submit answered %+v", e)
		}
		break
	}
}

// TestHostileKeysFillTheBudget (item 3): keys that keep the most files
// queued reach the master's upload budget only up to its last eighth,
// which stays for keys holding less than one job's largest files; an
// honest client still uploads. (Each key's first job may use the reserve:
// enough keys still fill it, as the bounds table says.)
func TestHostileKeysFillTheBudget(t *testing.T) {
	const size = 1 << 20
	c := newCluster(t, func(cfg *master.Config) {
		cfg.Limits.MaxSource, cfg.Limits.MaxStdin = size, 1 // a key holding over 1 MiB is heavy
		cfg.MaxHeldBytes = 8 * size
		cfg.Budget.Jobs.HeldBytesPerClient = 4 * size
	})
	c.fakeSlave("busy-c", 1, true, "c") // keeps the first c job: the others stay queued
	c.fakeSlave("good", 1, false, "python")
	honest := c.honestClient("alice")
	src := bytes.Repeat([]byte("/"), size)
	busy := 0
	for k := range 2 {
		s, err := c.dial(c.issue(certs.RoleClient, "filler"+strconv.Itoa(k), "1.0"), false, "")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			if _, e := submit(t, s, uint64(i+1), "a.c", src); e != nil {
				if e.Code != wire.CodeBusy || e.RetryAfterMs <= 0 {
					t.Fatalf("filler: %+v", e)
				}
				busy++
			}
		}
	}
	if held := c.srv.HeldBytes(); held > 7*size || busy == 0 {
		t.Fatalf("heavy keys hold %d bytes (%d refused), past the budget less its reserve (%d)", held, busy, 7*size)
	}
	for range 3 {
		honest.mustRunOK(2 * time.Second)
	}
}

// flood sends n Output messages of size bytes for a, sealed-looking when
// the job is sealed (a key on the first), then nothing.
func flood(n, size int) func(*hostileSlave, wire.Assign) {
	return func(h *hostileSlave, a wire.Assign) {
		data := bytes.Repeat([]byte("x"), size)
		for i := range n {
			o := wire.Output{JobID: a.JobID, Attempt: a.Attempt, Stream: wire.StreamStdout, Seq: uint64(i), Data: data}
			if a.Sealed && i == 0 {
				o.Key = bytes.Repeat([]byte("k"), 100)
			}
			if h.sess.Send(wire.MsgOutput, 0, o) != nil {
				return
			}
		}
	}
}

// TestHostileSlaveFloodsOutput (item 4): a slave answers every job with
// far more output than its cap. The master forwards at most the cap of
// each attempt, ends the job with output_limit, quarantines the slave
// after its strikes, and the honest client's jobs then run elsewhere.
func TestHostileSlaveFloodsOutput(t *testing.T) {
	const limit = 256 << 10
	c := newCluster(t)
	c.hostileSlave("evil", 1024, flood(512, 64<<10), nil) // 32 MiB per job
	c.fakeSlave("good", 1, false, "python")
	honest := c.honestClient("alice")
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("the flooding slave was not quarantined within 10 s")
		}
		// Three at once: the honest slave has one slot, so the struck
		// (suspect) slave still gets jobs until it is quarantined.
		for _, r := range honest.batch(3, "ok.py", []byte("print('honest')\n"), wire.JobLimits{OutputBytes: limit}) {
			if r.output > limit {
				t.Fatalf("round %d: the master forwarded %d output bytes over a cap of %d", i, r.output, limit)
			}
			if r.err != nil || (r.res.Status != wire.StatusOK && r.res.Status != wire.StatusOutputLimit) {
				t.Fatalf("round %d: %+v %+v", i, r.err, r.res)
			}
		}
		if sl := c.slaveInfo("evil"); sl.Quarantined {
			break
		}
	}
	if !strings.Contains(c.slaveInfo("evil").Health, "quarantined") {
		t.Fatalf("server list does not show the quarantine: %q", c.slaveInfo("evil").Health)
	}
	for _, r := range honest.batch(3, "ok.py", []byte("print('honest')\n"), wire.JobLimits{OutputBytes: limit}) {
		if r.res.Status != wire.StatusOK || r.res.Slave != "good" || r.elapsed > 2*time.Second {
			t.Fatalf("after the quarantine: %+v %+v after %v", r.err, r.res, r.elapsed)
		}
	}
}

// TestHostileSlaveFloodsSealedOutput: the same with sealed jobs, whose
// output the master cannot read: it counts the ciphertext against the cap
// plus the sealing overhead of each message.
func TestHostileSlaveFloodsSealedOutput(t *testing.T) {
	const limit = 256 << 10
	c := newCluster(t)
	c.hostileSlave("evil", 1024, flood(64, 16<<10), nil) // 1 MiB in messages the size an honest slave sends
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("sealed bytes")
	sub := wire.Submit{Language: "python", FileName: "a.py", SourceSize: int64(len(src)), Sealed: true,
		ClientKey: bytes.Repeat([]byte{1}, 32), Limits: wire.JobLimits{OutputBytes: limit}}
	cs.Send(wire.MsgSubmit, 1, sub)
	cs.SendFile(context.Background(), wire.NewFileHeader("1", wire.FileSource, "a.py", src), bytes.NewReader(src))
	var got int64
	for {
		env := recvAny(t, cs)
		switch env.Type {
		case wire.MsgWrapRequest:
			var w wire.WrapRequest
			wire.Decode(env, &w)
			cs.Send(wire.MsgWrapped, 0, wire.Wrapped{JobID: w.JobID, Attempt: w.Attempt, WrappedKey: []byte("wrapped")})
		case wire.MsgOutput:
			var o wire.Output
			wire.Decode(env, &o)
			got += int64(len(o.Data) + len(o.Key))
		case wire.MsgError:
			t.Fatalf("submit refused: %v", env)
		case wire.MsgResult:
			var r wire.Result
			wire.Decode(env, &r)
			if r.Status != wire.StatusOutputLimit {
				t.Fatalf("result %+v", r)
			}
			if got > limit+2048 || got < limit-(16<<10) {
				t.Fatalf("the master forwarded %d sealed output bytes for a cap of %d", got, limit)
			}
			return
		}
	}
}

// TestHostileSlaveCapturesJobs (item 5): a slave announces many free slots
// and never answers. Past the job's deadline the master cancels it there,
// strikes the slave and runs the job on another slave.
func TestHostileSlaveCapturesJobs(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) {
		cfg.Budget.Jobs.JobCompileTime = 200 * time.Millisecond
		cfg.Budget.Jobs.JobGrace = 300 * time.Millisecond
	})
	evil := c.hostileSlave("evil", 1024, nil, nil)
	c.fakeSlave("good", 1, false, "python")
	honest := c.honestClient("alice")
	r := honest.run("ok.py", []byte("print('honest')\n"), wire.JobLimits{TimeMs: 200})
	if r.res.Status != wire.StatusOK || r.res.Slave != "good" || r.elapsed > 3*time.Second {
		t.Fatalf("honest job: %+v %+v after %v", r.err, r.res, r.elapsed)
	}
	if evil.assigned() == 0 {
		t.Fatal("the job never went to the capturing slave: the test proves nothing")
	}
	waitFor(t, "the capturing slave told to cancel", func() bool { return len(evil.cancelled()) > 0 })
	if h := c.slaveInfo("evil").Health; !strings.Contains(h, "strike") {
		t.Fatalf("the capturing slave is not struck: %q", h)
	}
}

// TestHostileSlaveFailsEveryJob (item 14): a slave fails every job at once
// with an internal error of its own (a full disk). Each job runs again on
// another slave, and the broken slave is quarantined, visibly.
func TestHostileSlaveFailsEveryJob(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := master.NewMetrics(reg)
	c := newCluster(t, func(cfg *master.Config) { cfg.Metrics = m })
	broken := c.hostileSlave("broken", 1024, func(h *hostileSlave, a wire.Assign) {
		h.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusInternalError,
			SlaveFault: true, Detail: "write source: no space left on device"})
	}, nil)
	c.fakeSlave("good", 1, false, "python")
	honest := c.honestClient("alice")
	for range 2 {
		// Four at once: the honest slave has one slot, so the broken one
		// gets jobs while it is only suspect.
		for _, r := range honest.batch(4, "ok.py", []byte("print('honest')\n"), wire.JobLimits{}) {
			if r.err != nil || r.res.Status != wire.StatusOK || r.res.Slave != "good" || r.elapsed > 3*time.Second {
				t.Fatalf("honest job: %+v %+v after %v", r.err, r.res, r.elapsed)
			}
		}
	}
	if broken.assigned() < 3 {
		t.Fatal("no job went to the broken slave: the test proves nothing")
	}
	if sl := c.slaveInfo("broken"); !sl.Quarantined {
		t.Fatalf("the broken slave is not quarantined: %q", sl.Health)
	}
	out := c.admin(certs.RoleAdmin, "root").must("server", "list")
	wantAll(t, "server list", out, "quarantined", "no space left")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, mf := range mfs {
		if mf.GetName() == "kiln_quarantines_total" && mf.GetMetric()[0].GetCounter().GetValue() >= 1 {
			seen++
		}
		if mf.GetName() == "kiln_held_upload_bytes" && mf.GetMetric()[0].GetGauge().GetValue() != 0 {
			t.Fatalf("kiln_held_upload_bytes = %v with every job finished", mf.GetMetric()[0].GetGauge().GetValue())
		}
		if mf.GetName() == "kiln_slaves_out" {
			for _, s := range mf.GetMetric() {
				if s.GetLabel()[0].GetValue() == "quarantined" && s.GetGauge().GetValue() != 1 {
					t.Fatalf("kiln_slaves_out{quarantined} = %v", s.GetGauge().GetValue())
				}
			}
		}
	}
	if seen != 1 {
		t.Fatal("kiln_quarantines_total did not count the quarantine")
	}
}

// TestSlowFileFailsOnlyItsJob (item 13): a slave that stops reading one
// job's file fails that job (which runs elsewhere) but keeps its session
// and its other jobs.
func TestSlowFileFailsOnlyItsJob(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.SendFileIdle = 300 * time.Millisecond })
	stall := make(chan struct{})
	defer close(stall)
	slow := c.hostileSlave("slow", 4, func(h *hostileSlave, a wire.Assign) {
		if a.StdinSize == 0 {
			h.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK})
		}
	}, func(hdr wire.FileHeader, body io.ReadCloser) {
		if hdr.Kind == wire.FileStdin {
			<-stall // never reads the big stdin
			return
		}
		io.Copy(io.Discard, body)
	})
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("print(input())\n")
	stdin := bytes.Repeat([]byte("i"), 4<<20) // over the 1 MiB stream window
	cs.Send(wire.MsgSubmit, 1, wire.Submit{Language: "python", FileName: "a.py", SourceSize: int64(len(src)), StdinSize: int64(len(stdin))})
	cs.SendFile(context.Background(), wire.NewFileHeader("1", wire.FileSource, "a.py", src), bytes.NewReader(src))
	cs.SendFile(context.Background(), wire.NewFileHeader("1", wire.FileStdin, "stdin", stdin), bytes.NewReader(stdin))
	big := recvUntil(t, cs, wire.MsgAccepted)
	var a wire.Accepted
	wire.Decode(big, &a)
	c.waitLog("stdin not delivered", "job="+a.JobID)
	// The slave's session is intact: another job runs there at once.
	id, e := submit(t, cs, 2, "b.py", []byte("print(2)\n"))
	if e != nil {
		t.Fatal(e)
	}
	v := collect(t, cs, id)[id]
	if v.result.Status != wire.StatusOK || v.result.Slave != "slow" {
		t.Fatalf("second job on the slow slave: %+v", v.result)
	}
	// The stalled job runs on the next slave that comes.
	c.fakeSlave("good", 1, false, "python")
	v = collect(t, cs, a.JobID)[a.JobID]
	if v.result.Status != wire.StatusOK || v.result.Slave != "good" {
		t.Fatalf("stalled job: %+v", v.result)
	}
	if !slicesContains(slow.cancelled(), a.JobID) {
		t.Fatalf("the slow slave was not told to cancel %s: %v", a.JobID, slow.cancelled())
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestFairQueueAcrossClients (item 10): a client that queued many jobs
// does not hold up another's; and one key's jobs are capped across its
// sessions, refused busy with a retry hint.
func TestFairQueueAcrossClients(t *testing.T) {
	const cap = 40
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.JobsPerClient = cap })
	fs := c.fakeSlave("s1", 1, true, "python")
	bad := c.issue(certs.RoleClient, "mallory", "1.0")
	m1, err := c.dial(bad, false, "")
	if err != nil {
		t.Fatal(err)
	}
	m2, err := c.dial(bad, false, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range cap {
		s := m1
		if i%2 == 1 {
			s = m2
		}
		if _, e := submit(t, s, uint64(i+1), "m.py", []byte("print(1)\n")); e != nil {
			t.Fatalf("job %d: %+v", i, e)
		}
	}
	_, e := submit(t, m2, 999, "m.py", []byte("print(1)\n"))
	if e == nil || e.Code != wire.CodeBusy || e.RetryAfterMs <= 0 {
		t.Fatalf("job past the key's cap: %+v, want busy with a retry hint", e)
	}
	first := <-fs.jobs // mallory's first job holds the only slot
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	mine, e := submit(t, cs, 1, "a.py", []byte("print(2)\n"))
	if e != nil {
		t.Fatal(e)
	}
	fs.spawn(func() { fs.finish(first) })
	next := <-fs.jobs
	if next.JobID != mine {
		t.Fatalf("after %s the slot went to %s, not to the other client's %s", first.JobID, next.JobID, mine)
	}
	fs.spawn(func() { fs.finish(next) })
	if v := collect(t, cs, mine)[mine]; v.result.Status != wire.StatusOK {
		t.Fatalf("honest job: %+v", v.result)
	}
}
