package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"kiln/transport/wire"
)

// master accepts TLS connections on a loopback listener and runs handle on
// each session, like the master does. It returns the address.
func master(t testing.TB, tlsCfg *tls.Config, handle func(*Session)) string {
	t.Helper()
	ln := listen(t)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn := tls.Server(raw, tlsCfg)
			if err := conn.HandshakeContext(ctx); err != nil {
				cancel()
				raw.Close()
				continue
			}
			s, err := Server(ctx, conn, testConfig())
			cancel()
			if err != nil {
				continue
			}
			handle(s)
			s.Close()
		}
	}()
	return ln.Addr().String()
}

// welcome answers a good Hello with a Welcome and refuses anything else.
func welcome(s *Session) {
	h, err := ReadHello(context.Background(), s)
	if err != nil {
		Refuse(s, wire.CodeBadHello, err.Error())
		return
	}
	s.Send(wire.MsgWelcome, 0, &wire.Welcome{SessionID: "S-" + h.Name, HeartbeatMs: 2000, Limits: wire.Limits{MaxFrame: wire.MaxFrame}})
	s.Recv() // until the client closes
}

func TestDialHelloWelcome(t *testing.T) {
	ca := newCA(t)
	addr := master(t, ca.serverTLS(t), welcome)
	s, err := Dial(testCtx(t, 5*time.Second), addr, ca.clientTLS(t, ca), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.Conn().(*tls.Conn); !ok {
		t.Fatalf("Conn() is %T, want *tls.Conn", s.Conn())
	}
	w, err := Hello(testCtx(t, 5*time.Second), s, wire.Hello{Role: wire.RoleClient, Name: "alice", Version: "0.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	if w.SessionID != "S-alice" || w.Limits.MaxFrame != wire.MaxFrame {
		t.Fatalf("Welcome = %+v", w)
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		refusal wire.Refused
		want    string
	}{
		{wire.Refused{Code: wire.CodeRevokedKey, Reason: "revoked at 12:00"}, "master refused this key: revoked"},
		{wire.Refused{Code: wire.CodeVersionRetired}, "master refused this key: version retired"},
		{wire.Refused{Code: wire.CodeUnknownKey}, "master refused this key: unknown key"},
		{wire.Refused{Code: wire.CodeBusy, RetryAfterMs: 2000}, "master refused: busy, retry in 2s"},
		{wire.Refused{Code: "new_code", Reason: "line one\nline two"}, "master refused: new_code (line one line two)"},
	}
	for _, tt := range tests {
		t.Run(tt.refusal.Code, func(t *testing.T) {
			ca := newCA(t)
			addr := master(t, ca.serverTLS(t), func(s *Session) {
				if _, err := ReadHello(context.Background(), s); err != nil {
					t.Error(err)
				}
				if err := RefuseWith(s, tt.refusal); err != nil {
					t.Error(err)
				}
			})
			s, err := Dial(testCtx(t, 5*time.Second), addr, ca.clientTLS(t, ca), testConfig())
			if err != nil {
				t.Fatal(err)
			}
			_, err = Hello(testCtx(t, 5*time.Second), s, wire.Hello{Role: wire.RoleSlave, Name: "s1"})
			var re *RefusedError
			if !errors.As(err, &re) || re.Code != tt.refusal.Code {
				t.Fatalf("Hello = %v, want a RefusedError %s", err, tt.refusal.Code)
			}
			if err.Error() != tt.want {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.want)
			}
			waitDone(t, s) // Hello closes the session on error
		})
	}
}

func TestRefuseReachesPeerOverPipe(t *testing.T) {
	// net.Pipe has no buffer: the Refused must still arrive before the close.
	c, s := sessionPair(t, "pipe", testConfig(), testConfig())
	go func() {
		if _, err := ReadHello(context.Background(), s); err != nil {
			t.Error(err)
		}
		Refuse(s, wire.CodeKicked, "")
	}()
	_, err := Hello(testCtx(t, 5*time.Second), c, wire.Hello{Role: wire.RoleAdmin})
	if err == nil || err.Error() != "master disconnected this peer: kicked by an admin" {
		t.Fatalf("Hello = %v", err)
	}
}

func TestReadHelloRejects(t *testing.T) {
	t.Run("not a hello", func(t *testing.T) {
		c, s := sessionPair(t, "tcp", testConfig(), testConfig())
		c.Send(wire.MsgLoad, 0, &wire.Load{})
		if _, err := ReadHello(testCtx(t, 5*time.Second), s); !errors.Is(err, ErrBadHello) {
			t.Fatalf("ReadHello = %v, want ErrBadHello", err)
		}
		go Refuse(s, wire.CodeBadHello, "first message is Load")
		e, err := c.Recv()
		if err != nil || e.Type != wire.MsgRefused {
			t.Fatalf("client got %v, %v; want Refused", e.Type, err)
		}
	})
	t.Run("other protocol version", func(t *testing.T) {
		c, s := sessionPair(t, "tcp", testConfig(), testConfig())
		c.Send(wire.MsgHello, 0, &wire.Hello{Proto: 99, Role: wire.RoleClient})
		if _, err := ReadHello(testCtx(t, 5*time.Second), s); !errors.Is(err, ErrBadHello) || !strings.Contains(err.Error(), "version 99") {
			t.Fatalf("ReadHello = %v, want ErrBadHello about version 99", err)
		}
	})
	t.Run("silent peer", func(t *testing.T) {
		_, s := sessionPair(t, "tcp", testConfig(), testConfig())
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := ReadHello(ctx, s); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ReadHello = %v, want deadline exceeded", err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("ReadHello took %v", time.Since(start))
		}
		// The master can still refuse after the timeout.
		if err := Refuse(s, wire.CodeBadHello, "no hello"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDialErrors(t *testing.T) {
	ca := newCA(t)
	t.Run("refused", func(t *testing.T) {
		ln := listen(t)
		addr := ln.Addr().String()
		ln.Close()
		_, err := Dial(testCtx(t, 5*time.Second), addr, ca.clientTLS(t, ca), testConfig())
		var de *DialError
		if !errors.As(err, &de) {
			t.Fatalf("Dial = %v, want a DialError", err)
		}
		if want := "cannot reach master at " + addr + ": connection refused"; err.Error() != want {
			t.Errorf("Error() = %q, want %q", err.Error(), want)
		}
	})
	t.Run("client key from another CA", func(t *testing.T) {
		addr := master(t, ca.serverTLS(t), welcome)
		other := newCA(t)
		s, err := Dial(testCtx(t, 5*time.Second), addr, other.clientTLS(t, ca), testConfig())
		if err == nil {
			// TLS 1.3: the client learns of the rejection on its first read.
			_, err = Hello(testCtx(t, 5*time.Second), s, wire.Hello{Role: wire.RoleClient})
		}
		var he *HandshakeError
		if !errors.As(err, &he) {
			t.Fatalf("Dial+Hello = %v, want a HandshakeError", err)
		}
		if want := "TLS handshake with " + addr + " failed: remote error: tls: "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Error() = %q, want prefix %q", err.Error(), want)
		}
		t.Log(err)
	})
	t.Run("master from another CA", func(t *testing.T) {
		other := newCA(t)
		addr := master(t, other.serverTLS(t), welcome)
		_, err := Dial(testCtx(t, 5*time.Second), addr, ca.clientTLS(t, ca), testConfig())
		var he *HandshakeError
		if !errors.As(err, &he) || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("Dial = %v, want a HandshakeError about the unknown authority", err)
		}
		if !strings.HasPrefix(err.Error(), "TLS handshake with "+addr+" failed: ") {
			t.Errorf("Error() = %q", err)
		}
	})
	t.Run("not TLS", func(t *testing.T) {
		ln := listen(t)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
				c.Close()
			}
		}()
		_, err := Dial(testCtx(t, 5*time.Second), ln.Addr().String(), ca.clientTLS(t, ca), testConfig())
		var he *HandshakeError
		if !errors.As(err, &he) {
			t.Fatalf("Dial = %v, want a HandshakeError", err)
		}
		t.Log(err)
	})
	t.Run("timeout", func(t *testing.T) {
		ln := listen(t) // accepts at the TCP level, never speaks TLS
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := Dial(ctx, ln.Addr().String(), ca.clientTLS(t, ca), testConfig())
		if !errors.Is(err, context.DeadlineExceeded) || !strings.HasSuffix(err.Error(), "failed: timed out") {
			t.Fatalf("Dial = %v, want a handshake timeout", err)
		}
	})
}

func TestRefusedErrorWords(t *testing.T) {
	for _, tt := range []struct {
		e    RefusedError
		want string
	}{
		{RefusedError{Code: wire.CodeRoleMismatch}, "master refused this key: wrong role for this port"},
		{RefusedError{Code: wire.CodeBadHello, Reason: "protocol version 2"}, "master refused: bad hello (protocol version 2)"},
		{RefusedError{Code: wire.CodeShutdown}, "master disconnected this peer: shutting down"},
		{RefusedError{Code: wire.CodeBusy, RetryAfter: 1500 * time.Millisecond}, "master refused: busy, retry in 1.5s"},
		{RefusedError{Code: "x\x1b[31m"}, "master refused: x [31m"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.e, got, tt.want)
		}
	}
	if got := NewRefusedError(wire.Refused{Code: wire.CodeBusy, RetryAfterMs: 250}).RetryAfter; got != 250*time.Millisecond {
		t.Errorf("RetryAfter = %v", got)
	}
}
