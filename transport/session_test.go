package transport

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/transport/wire"
)

func TestControlMessagesBothWays(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c, s := sessionPair(t, kind, testConfig(), testConfig())
			for _, dir := range []struct {
				name     string
				from, to *Session
			}{{"client to server", c, s}, {"server to client", s, c}} {
				errc := make(chan error, 1)
				go func() {
					errc <- dir.from.Send(wire.MsgJobState, 42, &wire.JobState{JobID: "J1", State: wire.StateRunning, Slave: "s1"})
				}()
				e, err := dir.to.Recv()
				if err != nil {
					t.Fatalf("%s: %v", dir.name, err)
				}
				if err := <-errc; err != nil {
					t.Fatalf("%s: Send: %v", dir.name, err)
				}
				var js wire.JobState
				if err := wire.Decode(e, &js); err != nil {
					t.Fatal(err)
				}
				if e.Type != wire.MsgJobState || e.ID != 42 || js.JobID != "J1" || js.State != wire.StateRunning {
					t.Fatalf("%s: got %v %d %+v", dir.name, e.Type, e.ID, js)
				}
			}
			if _, ok := s.Conn().(net.Conn); !ok || s.RemoteAddr() == nil {
				t.Fatal("Conn or RemoteAddr missing")
			}
		})
	}
}

func TestConcurrentSend(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c, s := sessionPair(t, kind, testConfig(), testConfig())
			const senders, each = 32, 50
			var wg sync.WaitGroup
			for g := range senders {
				wg.Go(func() {
					for i := range each {
						out := wire.Output{JobID: "J", Seq: uint64(i), Data: []byte(strings.Repeat("x", 1000+g))}
						if err := c.Send(wire.MsgOutput, uint64(g*each+i), &out); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			seen := make(map[uint64]bool)
			for range senders * each {
				e, err := s.Recv()
				if err != nil {
					t.Fatal(err)
				}
				var out wire.Output
				if err := wire.Decode(e, &out); err != nil {
					t.Fatal(err)
				}
				if g := int(e.ID) / each; len(out.Data) != 1000+g || out.Seq != e.ID%each || seen[e.ID] {
					t.Fatalf("frame %d: seq %d, %d bytes, seen %v", e.ID, out.Seq, len(out.Data), seen[e.ID])
				}
				seen[e.ID] = true
			}
			wg.Wait()
		})
	}
}

// TestOversizedFrameRefused: a frame over the cap fails Recv at once, and
// the session stays up just long enough for the receiver to answer with a
// Refused that the sender reads, then closes.
func TestOversizedFrameRefused(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			small := testConfig()
			small.MaxFrame = 1024
			c, s := sessionPair(t, kind, testConfig(), small)
			// The sender refuses to send over its own cap, and stays up.
			if err := s.Send(wire.MsgOutput, 1, &wire.Output{Data: make([]byte, 2048)}); !errors.Is(err, wire.ErrFrameTooLarge) {
				t.Fatalf("Send over the cap = %v, want ErrFrameTooLarge", err)
			}
			go c.Send(wire.MsgOutput, 1, &wire.Output{Data: make([]byte, 2048)})
			_, err := s.Recv()
			if !errors.Is(err, wire.ErrFrameTooLarge) {
				t.Fatalf("Recv = %v, want ErrFrameTooLarge", err)
			}
			if !strings.Contains(err.Error(), "frame too large") || !strings.Contains(err.Error(), "max 1024") {
				t.Errorf("unclear error: %v", err)
			}
			if _, err2 := s.Recv(); err2 != err {
				t.Errorf("second Recv = %v, want the same error", err2)
			}
			go Refuse(s, wire.CodeBadRequest, "frame too large")
			env, rerr := c.Recv()
			var r wire.Refused
			if rerr != nil || wire.Decode(env, &r) != nil || r.Code != wire.CodeBadRequest {
				t.Fatalf("sender got %v %+v, want a Refused", rerr, r)
			}
			c.Close()
			waitDone(t, s)
			waitDone(t, c)
		})
	}
}

// waitDone fails unless s's Done channel closes within 5 s.
func waitDone(t *testing.T, s *Session) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session did not close")
	}
}

func TestNotYamuxPeer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	junk := make([]byte, 4096)
	for i := range junk {
		junk[i] = byte(rng.Uint32())
	}
	junk[0] = 0xfe // yamux version is 0
	inputs := map[string][]byte{
		"http": []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
		"tls":  append([]byte{0x16, 0x03, 0x01, 0x00, 0xf0, 0x01}, make([]byte, 240)...),
		"junk": junk,
	}
	for name, input := range inputs {
		t.Run(name, func(t *testing.T) {
			d, a := connPair(t, "tcp")
			defer d.Close()
			go func() {
				d.Write(input)
				io.Copy(io.Discard, d)
			}()
			start := time.Now()
			_, err := Server(testCtx(t, 10*time.Second), a, testConfig())
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Server = %v, want ErrProtocol", err)
			}
			if time.Since(start) > 2*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			t.Log(err)
		})
	}
	t.Run("silent", func(t *testing.T) {
		_, a := connPair(t, "tcp")
		ctx := testCtx(t, 200*time.Millisecond)
		if _, err := Server(ctx, a, testConfig()); !errors.Is(err, ctx.Err()) || err == nil {
			t.Fatalf("Server = %v, want the context error", err)
		}
	})
	t.Run("client side", func(t *testing.T) {
		d, a := connPair(t, "tcp")
		go func() {
			a.Write(inputs["http"])
			io.Copy(io.Discard, a)
			a.Close()
		}()
		// The junk may arrive before or after the control stream opens.
		c, err := Client(d, testConfig())
		if err == nil {
			defer c.Close()
			_, err = Hello(testCtx(t, 5*time.Second), c, wire.Hello{Role: wire.RoleClient})
		}
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "invalid protocol version") {
			t.Fatalf("Client or Hello = %v, want ErrProtocol: invalid protocol version", err)
		}
	})
}

func TestCloseIsIdempotent(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			c, s := sessionPair(t, kind, testConfig(), testConfig())
			recvErr := make(chan error, 1)
			go func() {
				_, err := s.Recv()
				recvErr <- err
			}()
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() { c.Close() })
			}
			wg.Wait()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			waitDone(t, c)
			if err := c.Send(wire.MsgCancel, 0, &wire.Cancel{}); !errors.Is(err, ErrClosed) {
				t.Errorf("Send after Close = %v, want ErrClosed", err)
			}
			if _, err := c.Recv(); !errors.Is(err, ErrClosed) {
				t.Errorf("Recv after Close = %v, want ErrClosed", err)
			}
			err := <-recvErr
			if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "by peer") {
				t.Errorf("peer Recv = %v, want session closed by peer", err)
			}
			waitDone(t, s)
		})
	}
}

// freezable is a connection that, once frozen, neither delivers nor sends
// anything: a peer that vanished without closing.
type freezable struct {
	net.Conn
	frozen chan struct{}
	once   sync.Once
	closed chan struct{}
	cmu    sync.Once
}

func (f *freezable) freeze() { f.once.Do(func() { close(f.frozen) }) }

func (f *freezable) Read(p []byte) (int, error) {
	select {
	case <-f.frozen:
		<-f.closed
		return 0, net.ErrClosed
	default:
		return f.Conn.Read(p)
	}
}

func (f *freezable) Write(p []byte) (int, error) {
	select {
	case <-f.frozen:
		return len(p), nil
	default:
		return f.Conn.Write(p)
	}
}

func (f *freezable) Close() error {
	f.cmu.Do(func() { close(f.closed) })
	return f.Conn.Close()
}

func TestKeepaliveDetectsDeadPeer(t *testing.T) {
	d, a := connPair(t, "tcp")
	fz := &freezable{Conn: d, frozen: make(chan struct{}), closed: make(chan struct{})}
	cfg := testConfig()
	cfg.KeepAliveInterval = 50 * time.Millisecond
	cfg.ConnectionWriteTimeout = 200 * time.Millisecond
	errc := make(chan error, 1)
	var s *Session
	go func() {
		var err error
		s, err = Server(testCtx(t, 5*time.Second), a, cfg)
		errc <- err
	}()
	ccfg := cfg
	ccfg.KeepAliveInterval = time.Hour // only the server pings
	c, err := Client(fz, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(150 * time.Millisecond) // a few pings succeed
	select {
	case <-s.Done():
		t.Fatal("session closed while the peer was alive")
	default:
	}
	fz.freeze()
	start := time.Now()
	waitDone(t, s)
	t.Logf("dead peer detected after %v", time.Since(start))
	if _, err := s.Recv(); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "keepalive") {
		t.Errorf("Recv = %v, want session closed: keepalive timeout", err)
	}
}

func TestRecvAfterPeerSendsThenCloses(t *testing.T) {
	c, s := sessionPair(t, "tcp", testConfig(), testConfig())
	for i := range 3 {
		if err := c.Send(wire.MsgCancel, uint64(i), &wire.Cancel{JobID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()
	for i := range 3 {
		e, err := s.Recv()
		if err != nil || e.ID != uint64(i) {
			// yamux may drop buffered data when the connection closes; the
			// frames already read must at least be whole.
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Recv %d = %v, %v", i, e, err)
			}
			return
		}
	}
	if _, err := s.Recv(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv after the last frame = %v, want ErrClosed", err)
	}
}
