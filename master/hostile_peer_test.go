package master_test

// The adversarial suite of issue 10, peer and session side: each test
// performs an attack a key holder can make, over mutual TLS with real keys,
// asserts the bound the master keeps (bytes, sessions or time), and that an
// honest client is served within a deadline meanwhile.

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// dialHello dials with b and sends h as its Hello (role, name and version
// from the certificate where h leaves them empty).
func (c *cluster) dialHello(b *certs.Bundle, slavePort bool, h wire.Hello) (*transport.Session, error) {
	c.t.Helper()
	return c.dialVia(b, slavePort, "", h)
}

// dialVia is dialHello through addr (a proxy) when addr is not empty.
func (c *cluster) dialVia(b *certs.Bundle, slavePort bool, addr string, h wire.Hello) (*transport.Session, error) {
	c.t.Helper()
	if addr == "" {
		addr = c.srv.ClientAddr()
		if slavePort {
			addr = c.srv.SlaveAddr()
		}
	}
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		c.t.Fatal(err)
	}
	if h.Role == "" {
		h.Role = id.Role
	}
	if h.Name == "" {
		h.Name = id.Name
	}
	if h.Version == "" {
		h.Version = id.Version
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := transport.Dial(ctx, addr, auth.ClientConfig(b, "127.0.0.1"), transport.Config{KeepAliveInterval: 250 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if _, err := transport.Hello(ctx, s, h); err != nil {
		s.Close()
		return nil, err
	}
	c.t.Cleanup(func() { s.Close() })
	return s, nil
}

// honest is a client that asks for Info and measures how long the answer
// takes; it fails the test past the deadline.
type honest struct {
	t    *testing.T
	sess *transport.Session
	id   uint64
}

func (c *cluster) honest() *honest {
	c.t.Helper()
	s, err := c.dial(c.issue(certs.RoleClient, "honest", "1.0"), false, "")
	if err != nil {
		c.t.Fatalf("honest client: %v", err)
	}
	return &honest{t: c.t, sess: s}
}

// served asks for Info and requires the answer within d.
func (h *honest) served(d time.Duration) time.Duration {
	h.t.Helper()
	h.id++
	start := time.Now()
	if err := h.sess.Send(wire.MsgInfoRequest, h.id, wire.InfoRequest{}); err != nil {
		h.t.Fatalf("honest client: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		for {
			env, err := h.sess.Recv()
			if err != nil || env.Type == wire.MsgInfo && env.ID == h.id {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			h.t.Fatalf("honest client: %v", err)
		}
	case <-time.After(d):
		h.sess.Close()
		<-done
		h.t.Fatalf("honest client not served within %v", d)
	}
	return time.Since(start)
}

// TestHostileOversizedHello: a Hello or Register over the field limits is
// refused at decode (it used to be kept for the session: ~27 MB each).
func TestHostileOversizedHello(t *testing.T) {
	c := newCluster(t)
	h := c.honest()
	b := c.issue(certs.RoleClient, "mallory", "1.0")
	for range 10 {
		_, err := c.dialHello(b, false, wire.Hello{Features: make([]string, wire.MaxFeatures+1)})
		if refusedCode(err) != wire.CodeBadHello {
			t.Fatalf("Hello with %d features: %v, want refused %s", wire.MaxFeatures+1, err, wire.CodeBadHello)
		}
		h.served(time.Second)
	}
	long := strings.Repeat("x", wire.MaxShort+1)
	if _, err := c.dialHello(b, false, wire.Hello{Features: []string{long}}); refusedCode(err) != wire.CodeBadHello {
		t.Fatalf("Hello with a %d-byte feature: %v, want refused", len(long), err)
	}
	sl, err := c.dial(c.issue(certs.RoleSlave, "evil", "1.0"), true, "")
	if err != nil {
		t.Fatal(err)
	}
	sl.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: make([]wire.Toolchain, wire.MaxToolchains+1)})
	if r := refusal(t, sl); r.Code != wire.CodeBadRequest {
		t.Fatalf("Register with %d toolchains: %+v, want %s", wire.MaxToolchains+1, r, wire.CodeBadRequest)
	}
	h.served(time.Second)
}

// TestHostileSecondSlaveSession: a second session with a live slave's
// bundle is refused with already_connected and a retry hint; the real
// slave keeps its session (it used to be kicked and exit for good).
func TestHostileSecondSlaveSession(t *testing.T) {
	c := newCluster(t)
	b := c.issue(certs.RoleSlave, "s1", "1.0")
	real, err := c.dial(b, true, "")
	if err != nil {
		t.Fatal(err)
	}
	real.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}})
	c.waitLog("slave registered", "peer=s1")
	for range 5 {
		_, err := c.dial(b, true, "")
		var re *transport.RefusedError
		if !asRefused(err, &re) || re.Code != wire.CodeAlreadyConnected || re.RetryAfter <= 0 {
			t.Fatalf("second session: %v, want refused %s with a retry hint", err, wire.CodeAlreadyConnected)
		}
	}
	select {
	case <-real.Done():
		t.Fatal("the real slave's session was closed")
	case <-time.After(300 * time.Millisecond):
	}
	c.honest().served(time.Second)
}

// TestHostileSilentSlaveReplaced: a slave whose session went silent (its
// link froze) is replaced by its new session once Budget.SilentAfter has
// passed; the old one is told it was replaced.
func TestHostileSilentSlaveReplaced(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.SilentAfter = 700 * time.Millisecond })
	b := c.issue(certs.RoleSlave, "s1", "1.0")
	px := newProxy(t, c.srv.SlaveAddr())
	old, err := c.dialVia(b, true, px.addr(), wire.Hello{})
	if err != nil {
		t.Fatal(err)
	}
	old.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}})
	c.waitLog("slave registered", "peer=s1")
	px.freeze()
	start := time.Now()
	for {
		_, err := c.dial(b, true, "")
		if err == nil {
			break
		}
		if refusedCode(err) != wire.CodeAlreadyConnected || time.Since(start) > 3*time.Second {
			t.Fatalf("new session after the old one froze: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("replaced after %v, want about SilentAfter", d)
	}
	c.waitLog("slave session silent; replaced by a new one")
}

func asRefused(err error, re **transport.RefusedError) bool {
	if refusedCode(err) == "" {
		return false
	}
	var r *transport.RefusedError
	for e := err; e != nil; {
		if x, ok := e.(*transport.RefusedError); ok {
			r = x
			break
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			break
		}
		e = u.Unwrap()
	}
	*re = r
	return r != nil
}

// proxy forwards TCP connections to a target until frozen; then it stops
// moving bytes either way, like a link that went dead without a reset.
type proxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{}
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, ln: ln, target: target, frozen: make(chan struct{})}
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) freeze() { close(p.frozen) }

func (p *proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(out, in) })
		p.wg.Go(func() { p.pipe(in, out) })
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			io.Copy(io.Discard, src) // swallow until closed
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
