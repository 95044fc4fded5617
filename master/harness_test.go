package master_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/auth"
	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// cluster is a real master on loopback with a fresh CA and registry.
type cluster struct {
	t   *testing.T
	pki *authtest.PKI
	dir string
	ca  *certs.CA
	reg *auth.Registry
	srv *master.Server // nil when the master runs in a child process (see figures_test.go)
	// clientAddr and slaveAddr are where the master listens.
	clientAddr, slaveAddr string
	logs                  *syncBuffer
	cancel                context.CancelFunc
	done                  chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newCluster(t *testing.T, tweak ...func(*master.Config)) *cluster {
	t.Helper()
	return clusterOf(t, authtest.New(t), tweak...)
}

// clusterOf starts a master of the cluster pki (a restarted master is a
// second one on the same pki).
func clusterOf(t *testing.T, pki *authtest.PKI, tweak ...func(*master.Config)) *cluster {
	t.Helper()
	dir, ca, mb, reg := pki.Dir, pki.CA, pki.Master, pki.Registry
	logs := &syncBuffer{}
	cfg := master.Config{
		ClientAddr: "127.0.0.1:0", SlaveAddr: "127.0.0.1:0", Version: "1.0",
		Bundle: mb, Registry: reg,
		Logger:            slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HeartbeatInterval: 500 * time.Millisecond,
		RegistryPoll:      50 * time.Millisecond,
		Budget:            master.Budget{HandshakeTimeout: 2 * time.Second, LogBurst: 1000},
	}
	for _, f := range tweak {
		f(&cfg)
	}
	srv, err := master.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.VerifyScheduler()
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{t: t, pki: pki, dir: dir, ca: ca, reg: reg, srv: srv, logs: logs, cancel: cancel, done: make(chan struct{}),
		clientAddr: srv.ClientAddr(), slaveAddr: srv.SlaveAddr()}
	go func() {
		defer close(c.done)
		srv.Run(ctx)
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *cluster) stop() {
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Error("master did not stop within 10 s")
	}
	if c.t.Failed() {
		c.t.Logf("master log:\n%s", c.logs.String())
	}
}

// issue mints a bundle and records it in the registry.
func (c *cluster) issue(role, name, version string) *certs.Bundle {
	c.t.Helper()
	return c.pki.Issue(role, name, version)
}

func (c *cluster) register(b *certs.Bundle) {
	c.t.Helper()
	c.pki.Register(b)
}

// dial connects with b to the client or slave port and says Hello.
func (c *cluster) dial(b *certs.Bundle, slavePort bool, version string) (*transport.Session, error) {
	c.t.Helper()
	addr := c.clientAddr
	if slavePort {
		addr = c.slaveAddr
	}
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		c.t.Fatal(err)
	}
	if version == "" {
		version = id.Version
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := transport.Dial(ctx, addr, auth.ClientConfig(b, "127.0.0.1"), transport.Config{KeepAliveInterval: 250 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	_, err = transport.Hello(ctx, s, wire.Hello{Role: id.Role, Name: id.Name, Version: version})
	if err != nil {
		s.Close()
		return nil, err
	}
	c.t.Cleanup(func() { s.Close() })
	return s, nil
}

// waitLog waits until the master's log contains all of the fragments on one line.
func (c *cluster) waitLog(fragments ...string) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(c.logs.String(), "\n") {
			if containsAll(line, fragments) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("master never logged a line with %q", fragments)
}

func containsAll(s string, subs []string) bool {
	for _, f := range subs {
		if !strings.Contains(s, f) {
			return false
		}
	}
	return true
}

// refusedCode returns the refusal code of err, or "".
func refusedCode(err error) string {
	var re *transport.RefusedError
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

// recvUntil reads messages until one of type want arrives.
func recvUntil(t *testing.T, s *transport.Session, want wire.MsgType) wire.Envelope {
	t.Helper()
	type res struct {
		env wire.Envelope
		err error
	}
	ch := make(chan res, 1)
	go func() {
		for {
			env, err := s.Recv()
			if err != nil || env.Type == want {
				ch <- res{env, err}
				return
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("waiting for %v: %v", want, r.err)
		}
		return r.env
	case <-time.After(10 * time.Second):
		t.Fatalf("no %v within 10 s", want)
	}
	return wire.Envelope{}
}
