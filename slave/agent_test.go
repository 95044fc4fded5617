package slave

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/slave/sandbox"
	"kiln/transport"
	"kiln/transport/wire"
)

// fakeMaster accepts slave sessions over loopback mutual TLS. decide
// answers each Hello: a nil Refused welcomes the slave.
type fakeMaster struct {
	t        *testing.T
	ln       net.Listener
	decide   func(h wire.Hello) *wire.Refused
	sessions chan *masterSide
	wg       sync.WaitGroup
}

// masterSide is the master's end of one session, with its messages.
type masterSide struct {
	sess  *transport.Session
	hello wire.Hello
	msgs  chan wire.Envelope // closed when the session ends
}

func newPKI(t *testing.T) (master, slave *certs.Bundle) {
	t.Helper()
	ca, err := certs.NewCA("test cluster")
	if err != nil {
		t.Fatal(err)
	}
	master, err = ca.Issue(certs.IssueRequest{Role: certs.RoleMaster, Name: "master", Version: "1.0", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	slave, err = ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	return master, slave
}

func startMaster(t *testing.T, bundle *certs.Bundle, decide func(wire.Hello) *wire.Refused) *fakeMaster {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", auth.ServerConfig(bundle))
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMaster{t: t, ln: ln, decide: decide, sessions: make(chan *masterSide, 16)}
	ctx, cancel := context.WithCancel(context.Background())
	m.wg.Go(func() { m.accept(ctx) })
	t.Cleanup(func() {
		cancel()
		ln.Close()
		m.wg.Wait()
		for {
			select {
			case ms := <-m.sessions:
				ms.sess.Close()
			default:
				return
			}
		}
	})
	return m
}

func (m *fakeMaster) accept(ctx context.Context) {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			return
		}
		m.wg.Go(func() {
			s, err := transport.Server(ctx, conn, transport.Config{})
			if err != nil {
				conn.Close()
				return
			}
			h, err := transport.ReadHello(ctx, s)
			if err != nil {
				s.Close()
				return
			}
			if r := m.decide(h); r != nil {
				transport.RefuseWith(s, *r)
				return
			}
			s.Send(wire.MsgWelcome, 0, &wire.Welcome{SessionID: "sess", HeartbeatMs: 2000, Master: "master"})
			ms := &masterSide{sess: s, hello: h, msgs: make(chan wire.Envelope, 1024)}
			m.sessions <- ms
			defer close(ms.msgs)
			for {
				e, err := s.Recv()
				if err != nil {
					return
				}
				ms.msgs <- e
			}
		})
	}
}

func (m *fakeMaster) next(t *testing.T) *masterSide {
	t.Helper()
	select {
	case ms := <-m.sessions:
		t.Cleanup(func() { ms.sess.Close() })
		return ms
	case <-time.After(10 * time.Second):
		t.Fatal("no slave session")
		return nil
	}
}

// expect returns the next message of type typ, skipping others.
func (ms *masterSide) expect(t *testing.T, typ wire.MsgType, v any) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e, ok := <-ms.msgs:
			if !ok {
				t.Fatalf("session ended while waiting for %v", typ)
			}
			if e.Type != typ {
				continue
			}
			if err := wire.Decode(e, v); err != nil {
				t.Fatal(err)
			}
			return
		case <-deadline:
			t.Fatalf("no %v within 20s", typ)
		}
	}
}

// jobResult collects Output messages of one job until its Result.
func (ms *masterSide) jobResult(t *testing.T, id string) (wire.Result, map[uint8]string) {
	t.Helper()
	out := map[uint8]string{}
	var next uint64
	deadline := time.After(30 * time.Second)
	for {
		select {
		case e, ok := <-ms.msgs:
			if !ok {
				t.Fatal("session ended before the result")
			}
			switch e.Type {
			case wire.MsgOutput:
				var o wire.Output
				wire.Decode(e, &o)
				if o.JobID == id {
					if o.Seq != next || len(o.Data) > outputChunk {
						t.Errorf("output seq %d (want %d), %d bytes", o.Seq, next, len(o.Data))
					}
					next++
					out[o.Stream] += string(o.Data)
				}
			case wire.MsgResult:
				var r wire.Result
				wire.Decode(e, &r)
				if r.JobID == id {
					return r, out
				}
			}
		case <-deadline:
			t.Fatalf("no result for %s", id)
		}
	}
}

func (ms *masterSide) sendFile(t *testing.T, id, kind string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hdr := wire.NewFileHeader(id, kind, kind, data)
	if err := ms.sess.SendFile(ctx, hdr, strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
}

func (ms *masterSide) assign(t *testing.T, a wire.Assign) {
	t.Helper()
	if err := ms.sess.Send(wire.MsgAssign, 0, &a); err != nil {
		t.Fatal(err)
	}
}

// runSlave runs a slave against m until the test ends and returns the
// channel that receives Run's error.
func runSlave(t *testing.T, m *fakeMaster, bundle *certs.Bundle) <-chan error {
	t.Helper()
	e, _ := newExecutor(t, &sandbox.Plain{})
	s, err := New(Config{
		Bundle: bundle, Master: m.ln.Addr().String(), Slots: 2, LoadInterval: 50 * time.Millisecond,
		Executor: e, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		FileTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() { done <- s.Run(ctx); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return done
}

func welcomeAll(wire.Hello) *wire.Refused { return nil }

func TestAgentRegistersAndRunsJobs(t *testing.T) {
	needLang(t, wire.LangPython)
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	runSlave(t, m, sb)
	ms := m.next(t)
	if ms.hello.Role != wire.RoleSlave || ms.hello.Name != "s1" || ms.hello.Version != "1.0" {
		t.Errorf("hello %+v", ms.hello)
	}
	var reg wire.Register
	ms.expect(t, wire.MsgRegister, &reg)
	if reg.Slots != 2 || reg.Sandbox != "none" || len(reg.Toolchains) == 0 || reg.CPUs < 1 || reg.MemBytes == 0 {
		t.Errorf("register %+v", reg)
	}
	for range 2 {
		var l wire.Load
		ms.expect(t, wire.MsgLoad, &l)
		if l.Slots != 2 || l.MemTotal == 0 {
			t.Errorf("load %+v", l)
		}
	}

	// Files before the Assign.
	src := []byte("import sys\nprint('x' * 100000)\nprint(sys.stdin.read().strip(), file=sys.stderr)")
	ms.sendFile(t, "j1", wire.FileSource, src)
	ms.sendFile(t, "j1", wire.FileStdin, []byte("to stderr\n"))
	ms.assign(t, wire.Assign{JobID: "j1", Attempt: 1, Language: wire.LangPython, FileName: "a.py",
		SourceSize: int64(len(src)), StdinSize: 10})
	res, out := ms.jobResult(t, "j1")
	if res.Status != wire.StatusOK || res.Attempt != 1 || res.Slave != "s1" ||
		out[wire.StreamStdout] != strings.Repeat("x", 100000)+"\n" || out[wire.StreamStderr] != "to stderr\n" {
		t.Errorf("j1: %+v, stdout %d bytes, stderr %q", res, len(out[wire.StreamStdout]), out[wire.StreamStderr])
	}

	// Assign before the files.
	src = []byte("print('second')")
	ms.assign(t, wire.Assign{JobID: "j2", Attempt: 1, Language: wire.LangPython, FileName: "b.py", SourceSize: int64(len(src))})
	time.Sleep(50 * time.Millisecond)
	ms.sendFile(t, "j2", wire.FileSource, src)
	res, out = ms.jobResult(t, "j2")
	if res.Status != wire.StatusOK || out[wire.StreamStdout] != "second\n" {
		t.Errorf("j2: %+v %q", res, out)
	}

	// Cancel a running job.
	src = []byte("import time\nprint('started', flush=True)\ntime.sleep(60)")
	ms.sendFile(t, "j3", wire.FileSource, src)
	ms.assign(t, wire.Assign{JobID: "j3", Attempt: 2, Language: wire.LangPython, FileName: "c.py", SourceSize: int64(len(src))})
	var o wire.Output
	ms.expect(t, wire.MsgOutput, &o)
	start := time.Now()
	if err := ms.sess.Send(wire.MsgCancel, 0, &wire.Cancel{JobID: "j3"}); err != nil {
		t.Fatal(err)
	}
	res, _ = ms.jobResult(t, "j3")
	if res.Status != wire.StatusCancelled || res.Attempt != 2 || time.Since(start) > 5*time.Second {
		t.Errorf("j3: %+v after %v", res, time.Since(start))
	}
}

func TestAgentFilesTimeout(t *testing.T) {
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	e, _ := newExecutor(t, &sandbox.Plain{})
	s, err := New(Config{Bundle: sb, Master: m.ln.Addr().String(), Executor: e, FileTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	ms := m.next(t)
	ms.assign(t, wire.Assign{JobID: "lost", Language: wire.LangPython, FileName: "a.py", SourceSize: 5})
	res, _ := ms.jobResult(t, "lost")
	if res.Status != wire.StatusInternalError {
		t.Errorf("%+v", res)
	}
}

func TestAgentReconnects(t *testing.T) {
	mb, sb := newPKI(t)
	var mu sync.Mutex
	hellos := 0
	m := startMaster(t, mb, func(wire.Hello) *wire.Refused {
		mu.Lock()
		defer mu.Unlock()
		hellos++
		if hellos == 2 {
			return &wire.Refused{Code: wire.CodeShutdown, Reason: "restarting"}
		}
		return nil
	})
	done := runSlave(t, m, sb)
	first := m.next(t)
	var reg wire.Register
	first.expect(t, wire.MsgRegister, &reg)
	first.sess.Close() // the master drops the slave; the next Hello is refused with shutdown
	second := m.next(t)
	second.expect(t, wire.MsgRegister, &reg)
	var l wire.Load
	second.expect(t, wire.MsgLoad, &l)
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
}

// TestAgentRetriesAlreadyConnected: refused because another session of its
// key is live (say its own old one, not yet noticed dead), a slave waits
// the master's retry_after and tries again instead of exiting.
func TestAgentRetriesAlreadyConnected(t *testing.T) {
	mb, sb := newPKI(t)
	var mu sync.Mutex
	var refusedAt time.Time
	m := startMaster(t, mb, func(wire.Hello) *wire.Refused {
		mu.Lock()
		defer mu.Unlock()
		if refusedAt.IsZero() {
			refusedAt = time.Now()
			return &wire.Refused{Code: wire.CodeAlreadyConnected, RetryAfterMs: 300}
		}
		return nil
	})
	done := runSlave(t, m, sb)
	ms := m.next(t)
	var reg wire.Register
	ms.expect(t, wire.MsgRegister, &reg)
	mu.Lock()
	waited := time.Since(refusedAt)
	mu.Unlock()
	if waited < 300*time.Millisecond {
		t.Errorf("reconnected %v after a 300 ms retry_after", waited)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v", err)
	default:
	}
}

func TestAgentExitsOnRefusal(t *testing.T) {
	for _, code := range []string{wire.CodeRevokedKey, wire.CodeUnknownKey, wire.CodeVersionRetired, wire.CodeCertExpired} {
		t.Run(code, func(t *testing.T) {
			mb, sb := newPKI(t)
			m := startMaster(t, mb, func(wire.Hello) *wire.Refused { return &wire.Refused{Code: code} })
			select {
			case err := <-runSlave(t, m, sb):
				var ref *transport.RefusedError
				if !errors.As(err, &ref) || ref.Code != code {
					t.Errorf("Run = %v, want a refusal %s", err, code)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
}

func TestAgentExitsWhenKicked(t *testing.T) {
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	done := runSlave(t, m, sb)
	ms := m.next(t)
	var reg wire.Register
	ms.expect(t, wire.MsgRegister, &reg)
	go transport.Refuse(ms.sess, wire.CodeKicked, "by admin")
	select {
	case err := <-done:
		var ref *transport.RefusedError
		if !errors.As(err, &ref) || ref.Code != wire.CodeKicked {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a kick")
	}
}

func TestAgentStopsOnCancel(t *testing.T) {
	_, sb := newPKI(t)
	e, _ := newExecutor(t, &sandbox.Plain{})
	// Nobody listens: Run keeps retrying until cancelled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := New(Config{Bundle: sb, Master: addr, Executor: e, BackoffMin: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx); err != nil {
		t.Errorf("Run = %v, want nil after ctx ended", err)
	}
}

// TestAgentBadFileFailsAtOnce: a file whose bytes do not match its SHA-256
// fails its job at once with the reason, not at the file timeout.
func TestAgentBadFileFailsAtOnce(t *testing.T) {
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	runSlave(t, m, sb) // FileTimeout 5 s
	ms := m.next(t)
	src := []byte("print('x')\n")
	hdr := wire.NewFileHeader("bad", wire.FileSource, "a.py", src)
	hdr.SHA256[0] ^= 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms.assign(t, wire.Assign{JobID: "bad", Attempt: 1, Language: wire.LangPython, FileName: "a.py", SourceSize: int64(len(src))})
	ms.sess.SendFile(ctx, hdr, strings.NewReader(string(src)))
	// The detail names the bad file, not the file timeout's "did not arrive".
	res, _ := ms.jobResult(t, "bad")
	if res.Status != wire.StatusInternalError || !strings.Contains(res.Detail, "source not received") {
		t.Fatalf("%+v", res)
	}
}
