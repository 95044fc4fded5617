package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/transport"
	"kiln/transport/wire"
)

var hello = Request{FileName: "dir/hello.py", Source: []byte("print('hello')\n")}

// submit runs Submit in a goroutine, so the test can play the master.
func submit(t *testing.T, c *Client, req Request) func() *Job {
	t.Helper()
	type res struct {
		j   *Job
		err error
	}
	ch := make(chan res, 1)
	go func() {
		j, err := c.Submit(testCtx(t), req)
		ch <- res{j, err}
	}()
	return func() *Job {
		t.Helper()
		r := <-ch
		if r.err != nil {
			t.Fatalf("Submit: %v", r.err)
		}
		return r.j
	}
}

func TestSubmitRoundTrip(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	if m.hello.Role != wire.RoleClient || m.hello.Name != "alice" || m.hello.Version != "1.0" || m.hello.Proto != wire.ProtocolVersion {
		t.Errorf("hello = %+v", m.hello)
	}
	if c.Welcome().Limits != testLimits {
		t.Errorf("welcome limits = %+v", c.Welcome().Limits)
	}
	req := hello
	req.Stdin = []byte("input")
	req.Limits = wire.JobLimits{TimeMs: 5000}
	var progress []int64
	req.Progress = func(sent, total int64) { progress = append(progress, sent, total) }
	got := submit(t, c, req)
	sub, files := p.accept("j1")
	job := got()
	if sub.Language != wire.LangPython || sub.FileName != "hello.py" || sub.SourceSize != int64(len(hello.Source)) || sub.StdinSize != 5 || sub.Limits.TimeMs != 5000 {
		t.Errorf("submit = %+v", sub)
	}
	if files[0].hdr.Kind != wire.FileSource || string(files[0].data) != string(hello.Source) || files[1].hdr.Kind != wire.FileStdin || string(files[1].data) != "input" {
		t.Errorf("files = %+v", files)
	}
	if files[0].hdr.JobID != files[1].hdr.JobID || files[0].hdr.JobID == "" {
		t.Errorf("file job ids %q %q", files[0].hdr.JobID, files[1].hdr.JobID)
	}
	total := int64(len(hello.Source) + 5)
	if n := len(progress); n == 0 || progress[n-2] != total || progress[n-1] != total {
		t.Errorf("progress = %v, want to end at %d/%d", progress, total, total)
	}
	if job.ID() != "j1" {
		t.Errorf("job id %q", job.ID())
	}
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j1", State: wire.StateQueued})
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j1", State: wire.StateRunning, Slave: "s1", Attempt: 1})
	p.send(wire.MsgOutput, 0, wire.Output{JobID: "j1", Attempt: 1, Stream: wire.StreamStdout, Data: []byte("hello ")})
	p.send(wire.MsgOutput, 0, wire.Output{JobID: "j1", Attempt: 1, Stream: wire.StreamStderr, Data: []byte("warn")})
	p.send(wire.MsgOutput, 0, wire.Output{JobID: "j1", Attempt: 1, Stream: wire.StreamStdout, Data: []byte("world")})
	p.send(wire.MsgResult, 0, wire.Result{JobID: "j1", Attempt: 1, Status: wire.StatusOK, Slave: "s1", WallMs: 12})
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j1", State: wire.StateDone})

	var kinds []string
	for ev := range job.Events() {
		switch {
		case ev.State != nil:
			kinds = append(kinds, ev.State.State)
		case ev.Output != nil:
			kinds = append(kinds, "out:"+string(ev.Output.Data))
		case ev.Result != nil:
			kinds = append(kinds, "result:"+ev.Result.Status)
		}
	}
	want := "queued running out:hello  out:warn out:world result:ok"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("events = %q, want %q", got, want)
	}
	out, err := job.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Stdout) != "hello world" || string(out.Stderr) != "warn" || out.Result.Status != wire.StatusOK || out.Result.Slave != "s1" || out.Job != "j1" {
		t.Errorf("outcome = %+v", out)
	}
	if again, _ := job.Wait(testCtx(t)); string(again.Stdout) != "hello world" {
		t.Errorf("second Wait = %+v", again)
	}
}

func TestSubmitBusy(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Submit(testCtx(t), hello)
		errc <- err
	}()
	env := p.recv(wire.MsgSubmit)
	p.send(wire.MsgError, env.ID, wire.Error{Code: wire.CodeBusy, Message: "queue full", RetryAfterMs: 1500})
	err := <-errc
	var re *RequestError
	if !errors.As(err, &re) || re.Code != wire.CodeBusy || re.RetryAfter != 1500*time.Millisecond {
		t.Fatalf("err = %v, want busy with a 1.5s hint", err)
	}
	if !strings.Contains(err.Error(), "queue full") || !strings.Contains(err.Error(), "1.5s") {
		t.Errorf("message %q", err)
	}
	// The session stays usable.
	go func() {
		_, err := c.Submit(testCtx(t), hello)
		errc <- err
	}()
	env = p.recv(wire.MsgSubmit)
	p.send(wire.MsgError, env.ID, wire.Error{Code: wire.CodeNoSlave, Message: "no connected slave runs python"})
	if err := <-errc; !errors.As(err, &re) || re.Code != wire.CodeNoSlave || re.Error() != "master: no connected slave runs python" {
		t.Fatalf("err = %v", err)
	}
}

func TestRequeueResetsOutput(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	got := submit(t, c, hello)
	p.accept("j2")
	job := got()
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j2", State: wire.StateRunning, Slave: "a", Attempt: 1})
	p.send(wire.MsgOutput, 0, wire.Output{JobID: "j2", Attempt: 1, Stream: wire.StreamStdout, Data: []byte("void")})
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j2", State: wire.StateRequeued, Attempt: 2})
	p.send(wire.MsgOutput, 0, wire.Output{JobID: "j2", Attempt: 1, Stream: wire.StreamStdout, Data: []byte("late")})
	p.send(wire.MsgResult, 0, wire.Result{JobID: "j2", Attempt: 1, Status: wire.StatusOK, Slave: "a"})
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j2", State: wire.StateRunning, Slave: "b", Attempt: 2})
	p.send(wire.MsgOutput, 0, wire.Output{JobID: "j2", Attempt: 2, Stream: wire.StreamStdout, Data: []byte("fresh")})
	p.send(wire.MsgResult, 0, wire.Result{JobID: "j2", Attempt: 2, Status: wire.StatusOK, Slave: "b"})
	out, err := job.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Stdout) != "fresh" || out.Result.Slave != "b" || out.Attempts != 2 {
		t.Errorf("outcome = %+v, want only the second attempt's output", out)
	}
}

func TestRefusedAtHello(t *testing.T) {
	m := newFakeMaster(t)
	m.refuse = &wire.Refused{Code: wire.CodeRevokedKey, Reason: "revoked by admin"}
	_, err := Dial(testCtx(t), Config{Bundle: m.client, Master: m.addr})
	var re *transport.RefusedError
	if !errors.As(err, &re) || re.Code != wire.CodeRevokedKey {
		t.Fatalf("err = %v, want a revoked refusal", err)
	}
	if err.Error() != "master refused this key: revoked" {
		t.Errorf("message %q", err)
	}
}

func TestLostMidJob(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	got := submit(t, c, hello)
	p.accept("j3")
	job := got()
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j3", State: wire.StateRunning, Attempt: 1})
	p.s.Close()
	_, err := job.Wait(testCtx(t))
	var lost *LostError
	if !errors.Is(err, ErrConnLost) || !errors.As(err, &lost) || lost.Job != "j3" {
		t.Fatalf("err = %v, want a LostError for j3", err)
	}
	if !strings.HasPrefix(err.Error(), "lost connection to master while job j3 was running") {
		t.Errorf("message %q", err)
	}
	<-c.Done()
	if c.Err() == nil {
		t.Error("Err() = nil after the session died")
	}
	if _, err := c.Submit(testCtx(t), hello); !errors.Is(err, ErrConnLost) {
		t.Errorf("Submit after loss: %v", err)
	}
}

func TestRefusedMidSession(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	got := submit(t, c, hello)
	p.accept("j4")
	job := got()
	go transport.Refuse(p.s, wire.CodeKicked, "bye")
	_, err := job.Wait(testCtx(t))
	var re *transport.RefusedError
	if !errors.As(err, &re) || re.Code != wire.CodeKicked {
		t.Fatalf("err = %v, want the kick", err)
	}
	<-c.Done()
	if !errors.As(c.Err(), &re) || re.Code != wire.CodeKicked {
		t.Errorf("Err() = %v", c.Err())
	}
}

func TestCancel(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	got := submit(t, c, hello)
	p.accept("j5")
	job := got()
	if err := job.Cancel(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	var cn wire.Cancel
	if err := wire.Decode(p.recv(wire.MsgCancel), &cn); err != nil || cn.JobID != "j5" {
		t.Fatalf("cancel = %+v, %v", cn, err)
	}
	p.send(wire.MsgResult, 0, wire.Result{JobID: "j5", Status: wire.StatusCancelled})
	if out, err := job.Wait(testCtx(t)); err != nil || out.Result.Status != wire.StatusCancelled {
		t.Fatalf("Wait = %+v, %v", out, err)
	}
}

func TestFailedStateEndsJob(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	got := submit(t, c, hello)
	p.accept("j6")
	job := got()
	p.send(wire.MsgJobState, 0, wire.JobState{JobID: "j6", State: wire.StateFailed, Detail: "no slave left"})
	out, err := job.Wait(testCtx(t))
	if err != nil || out.Result.Status != wire.StatusInternalError || out.Result.Detail != "no slave left" {
		t.Fatalf("Wait = %+v, %v", out, err)
	}
}

func TestInfoAndAdmin(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.admin)
	if m.hello.Role != wire.RoleAdmin {
		t.Errorf("role %q", m.hello.Role)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		env := p.recv(wire.MsgInfoRequest)
		p.send(wire.MsgInfo, env.ID, wire.Info{Master: "fake", Slaves: 2})
		env = p.recv(wire.MsgAdminRequest)
		var req wire.AdminRequest
		wire.Decode(env, &req)
		p.send(wire.MsgAdminReply, env.ID, wire.AdminReply{Text: strings.Join(req.Args, "/")})
		env = p.recv(wire.MsgAdminRequest)
		p.send(wire.MsgError, env.ID, wire.Error{Code: wire.CodeNotFound, Message: "no such slave"})
	}()
	info, err := c.Info(testCtx(t))
	if err != nil || info.Slaves != 2 || info.Master != "fake" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	rep, err := c.Admin(testCtx(t), []string{"server", "list"})
	if err != nil || rep.Text != "server/list" {
		t.Fatalf("Admin = %+v, %v", rep, err)
	}
	_, err = c.Admin(testCtx(t), []string{"kick", "x"})
	var re *RequestError
	if !errors.As(err, &re) || re.Code != wire.CodeNotFound {
		t.Fatalf("Admin error = %v", err)
	}
	<-done
}

// TestConcurrentSubmits runs many jobs at once over one client while the
// fake master answers them in an order of its own.
func TestConcurrentSubmits(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	const n = 20
	go func() {
		for i := range n {
			env, err := p.s.Recv()
			if err != nil {
				return
			}
			id := "job" + strconv.Itoa(i)
			p.s.Send(wire.MsgAccepted, env.ID, wire.Accepted{JobID: id})
			p.s.Send(wire.MsgOutput, 0, wire.Output{JobID: id, Stream: wire.StreamStdout, Data: []byte(id)})
			p.s.Send(wire.MsgResult, 0, wire.Result{JobID: id, Status: wire.StatusOK})
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			job, err := c.Submit(testCtx(t), hello)
			if err != nil {
				errs <- err
				return
			}
			out, err := job.Wait(testCtx(t))
			if err == nil && string(out.Stdout) != job.ID() {
				err = errors.New("job " + job.ID() + " got output " + string(out.Stdout))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRequestCheck(t *testing.T) {
	l := wire.Limits{MaxSource: 10, MaxStdin: 3}
	cases := []struct {
		req  Request
		want string
	}{
		{Request{FileName: "a.rb", Source: []byte("x")}, "unknown language"},
		{Request{FileName: "a.c"}, "empty source"},
		{Request{FileName: "a.c", Source: make([]byte, 11)}, "over the master's limit"},
		{Request{FileName: "a.c", Source: []byte("x"), Stdin: []byte("1234")}, "stdin is 4 bytes"},
	}
	for _, tc := range cases {
		err := tc.req.Check(l)
		if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%s) = %v, want %q", tc.req.FileName, err, tc.want)
		}
	}
	if err := (Request{FileName: "A.CPP", Source: []byte("x")}).Check(l); err != nil {
		t.Errorf("valid request: %v", err)
	}
}

func TestCloseIdempotent(t *testing.T) {
	m := newFakeMaster(t)
	c, _ := m.dial(t, m.client)
	c.Close()
	c.Close()
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err() = %v", c.Err())
	}
	if _, err := c.Info(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Info after Close: %v", err)
	}
}

// TestSubmitInline: to a master that echoes the "inline" feature, small
// files travel inside the Submit with their SHA-256 (none when sealed)
// and on no stream; a stdin too large for what is left keeps its stream
// while the source stays inline; a master without the feature gets
// streams (TestSubmitRoundTrip).
func TestSubmitInline(t *testing.T) {
	m := newFakeMaster(t)
	m.features = []string{wire.FeatureInline}
	c, p := m.dial(t, m.client)
	if !slices.Contains(m.hello.Features, wire.FeatureInline) {
		t.Fatalf("hello features %v, want %q", m.hello.Features, wire.FeatureInline)
	}
	req := hello
	req.Stdin = []byte("input")
	var progress []int64
	req.Progress = func(sent, total int64) { progress = append(progress, sent, total) }
	got := submit(t, c, req)
	sub, files := p.accept("j1")
	got()
	if !files[0].inline || !files[1].inline || string(files[0].data) != string(hello.Source) || string(files[1].data) != "input" {
		t.Fatalf("files = %+v, want both inline", files)
	}
	if err := wire.CheckInline(sub.Inline, sub.SourceSize, sub.StdinSize, false); err != nil {
		t.Fatalf("inline files do not check: %v", err)
	}
	if total := int64(len(hello.Source) + 5); len(progress) != 2 || progress[0] != total || progress[1] != total {
		t.Errorf("progress = %v, want one call %d/%d", progress, total, total)
	}

	// A stdin over what the source leaves of MaxInline: source inline,
	// stdin on its stream. It is the first file stream of this session,
	// so job 1 opened none.
	big := req
	big.Progress = nil
	big.Stdin = make([]byte, wire.MaxInline-len(hello.Source)+1)
	got = submit(t, c, big)
	sub, files = p.accept("j2")
	got()
	if !files[0].inline || files[1].inline || len(files[1].data) != len(big.Stdin) || files[1].hdr.Kind != wire.FileStdin {
		t.Fatalf("source inline %v, stdin inline %v (%d bytes)", files[0].inline, files[1].inline, len(files[1].data))
	}
	if len(sub.Stdin) != 0 || sub.StdinSize != int64(len(big.Stdin)) {
		t.Errorf("submit stdin %d bytes inline, size %d", len(sub.Stdin), sub.StdinSize)
	}

	// A source over MaxInline goes on a stream, and the small stdin
	// rides in the Submit.
	large := hello
	large.Source = make([]byte, wire.MaxInline+1)
	large.Stdin = []byte("in")
	got = submit(t, c, large)
	_, files = p.accept("j3")
	got()
	if files[0].inline || len(files[0].data) != len(large.Source) || !files[1].inline || string(files[1].data) != "in" {
		t.Fatalf("source inline %v, stdin inline %v", files[0].inline, files[1].inline)
	}

	// Sealed: the ciphertext rides inline, without a SHA-256 (its AEAD
	// authenticates it end to end), never the plaintext.
	sealed := hello
	sealed.Seal = true
	got = submit(t, c, sealed)
	sub, files = p.accept("j4")
	got()
	if !sub.Sealed || !files[0].inline || sub.SourceSHA256 != nil || strings.Contains(string(sub.Source), "hello") || sub.SourceSize != int64(len(sub.Source)) {
		t.Fatalf("sealed submit: sealed %v inline %v sum %x source %q", sub.Sealed, files[0].inline, sub.SourceSHA256, sub.Source)
	}
}

// TestSubmitInlineUnderSmallFrame: under a master frame cap too small for
// wire.MaxInline and the rest of the Submit, a file inlines only when the
// whole Submit fits the cap, else it takes a stream.
func TestSubmitInlineUnderSmallFrame(t *testing.T) {
	m := newFakeMaster(t)
	m.features = []string{wire.FeatureInline}
	m.limits = testLimits
	m.limits.MaxFrame = 16 << 10
	c, p := m.dial(t, m.client)
	for i, tc := range []struct {
		size   int
		inline bool
	}{{16<<10 - 400, true}, {16<<10 - 200, false}} {
		req := hello
		req.Source = make([]byte, tc.size)
		got := submit(t, c, req)
		_, files := p.accept(fmt.Sprint("j", i))
		got()
		if files[0].inline != tc.inline || len(files[0].data) != tc.size {
			t.Errorf("%d-byte source under a 16 KiB frame: inline %v, want %v", tc.size, files[0].inline, tc.inline)
		}
	}
}
