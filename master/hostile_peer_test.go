package master_test

// The adversarial suite of issue 10, peer and session side: each test
// performs an attack a key holder can make, over mutual TLS with real keys,
// asserts the bound the master keeps (bytes, sessions or time), and that an
// honest client is served within a deadline meanwhile.

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
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
	if addr == "" { // the listeners' addresses: c.srv is nil for a child master
		addr = c.clientAddr
		if slavePort {
			addr = c.slaveAddr
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
	if _, err := c.dialHello(b, false, wire.Hello{Features: []string{strings.Repeat("x", 200<<10)}}); refusedCode(err) != wire.CodeBadHello {
		t.Fatalf("a 200 KiB Hello: %v, want refused %s from its frame size", err, wire.CodeBadHello)
	}
	c.waitLog("bad hello", "frame too large", "(max 65536)") // refused before its body was read
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

// TestHostileSessionsPerKey: one client key cannot open sessions without
// bound (6,000 took ~700 MB); past the cap it gets busy with a retry hint,
// and another key is served.
func TestHostileSessionsPerKey(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.MaxSessionsPerKey = 4 })
	h := c.honest()
	b := c.issue(certs.RoleClient, "mallory", "1.0")
	var open []*transport.Session
	for range 4 {
		s, err := c.dial(b, false, "")
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	for range 3 {
		_, err := c.dial(b, false, "")
		var re *transport.RefusedError
		if !asRefused(err, &re) || re.Code != wire.CodeBusy || re.RetryAfter <= 0 {
			t.Fatalf("fifth session: %v, want refused busy with a retry hint", err)
		}
		h.served(time.Second)
	}
	open[0].Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := c.dial(b, false, "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a session freed by closing one is still refused: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHostileHandshakeFlood: connections that never finish their
// handshake hold at most Budget.MaxHandshakes slots, each for at most the
// handshake timeout; past the cap a connection is closed at once, and
// admitted sessions are served meanwhile.
//
// The two bounds are checked on what the master did, not on how fast the
// test's goroutines ran: the cap on a master whose handshake timeout is
// far longer than the test (the silent connections cannot expire while
// it runs, however loaded the machine), and a refusal counts only if the
// master logged it as one past the cap, before TLS; the timeout on a
// second master, where each silent connection must be closed by the
// master's own handshake deadline ("context deadline exceeded"), never
// before it and within 3 s of the dials by the master's log time stamps,
// and its slot then serves a new client.
func TestHostileHandshakeFlood(t *testing.T) {
	const capped = 8
	c := newCluster(t, func(cfg *master.Config) {
		cfg.Budget.MaxHandshakes = capped
		cfg.Budget.HandshakeTimeout = time.Minute
	})
	h := c.honest()
	for range capped {
		conn, err := net.Dial("tcp", c.srv.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
	}
	// Past the cap a connection is closed before TLS: its read ends with
	// no byte. (The honest client's slot may be released just after its
	// Welcome, so the first dial may still get a slot: dial until one is
	// refused.)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", c.srv.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
		if err == io.EOF || isReset(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection past the handshake cap was closed: %v", err)
		}
	}
	c.waitLog("too many handshakes in progress; connection closed", fmt.Sprintf("max=%d", capped))
	h.served(5 * time.Second) // room for a loaded machine: the honest side has no bound to prove

	// The timeout: every silent connection is closed by the master's
	// handshake deadline, after it and not before, and a new client then
	// gets in.
	const timeout = time.Second
	c2 := newCluster(t, func(cfg *master.Config) {
		cfg.Budget.MaxHandshakes = capped
		cfg.Budget.HandshakeTimeout = timeout
	})
	start := time.Now()
	var silent []net.Conn
	for range capped {
		conn, err := net.Dial("tcp", c2.srv.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		silent = append(silent, conn)
	}
	for i, conn := range silent {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
			t.Fatalf("silent connection %d: %v, want closed by the master", i, err)
		}
	}
	if el := time.Since(start); el < timeout {
		t.Fatalf("silent connections closed after %v, before the %v handshake timeout", el, timeout)
	}
	deadline = time.Now().Add(5 * time.Second)
	for strings.Count(c2.logs.String(), "context deadline exceeded") < capped {
		if time.Now().After(deadline) {
			t.Fatalf("the master did not end the %d silent handshakes on its deadline:\n%s", capped, c2.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The upper bound, on the master's own clock: each silent handshake
	// ended (its log line's time stamp) within 3 s of the test starting to
	// dial, as before, for a 1 s timeout; how late this test's goroutine
	// then reads the close does not count.
	for _, line := range strings.Split(c2.logs.String(), "\n") {
		if !strings.Contains(line, "context deadline exceeded") {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("log line without a time stamp: %q: %v", line, err)
		}
		if held := at.Sub(start); held > 3*timeout {
			t.Fatalf("a silent handshake held its slot %v, past 3 s for a %v timeout", held, timeout)
		}
	}
	// A slot is released just after its log line: the new client may
	// need a second try.
	late := c2.issue(certs.RoleClient, "late", "1.0")
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, err := c2.dial(late, false, "")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no handshake slot freed after the silent handshakes timed out: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed"))
}

// TestHostileCertificateExpires: a session outlives its certificate no
// longer: the master refuses it with certificate_expired at NotAfter.
func TestHostileCertificateExpires(t *testing.T) {
	c := newCluster(t)
	h := c.honest()
	b, err := c.ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "shortlived", Version: "1.0",
		NotBefore: time.Now().Add(-time.Second), Validity: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.register(b)
	s, err := c.dial(b, false, "")
	if err != nil {
		t.Fatal(err)
	}
	r := refusal(t, s)
	if r.Code != wire.CodeCertExpired {
		t.Fatalf("refusal %+v, want %s", r, wire.CodeCertExpired)
	}
	if late := time.Since(b.Cert.NotAfter); late < 0 || late > time.Second {
		t.Fatalf("refused %v after NotAfter, want within 1 s after", late)
	}
	h.served(time.Second)
}

// bigInfo registers a slave whose 64 toolchains have long compiler names,
// so that every Info reply is about 16 KiB: a client that stops reading
// then fills its yamux window and send queue in a few dozen requests.
func (c *cluster) bigInfo() {
	c.t.Helper()
	s, err := c.dial(c.issue(certs.RoleSlave, "wordy", "1.0"), true, "")
	if err != nil {
		c.t.Fatal(err)
	}
	var tcs []wire.Toolchain
	for i := range wire.MaxToolchains {
		tcs = append(tcs, wire.Toolchain{Language: wire.LangPython, Compiler: fmt.Sprintf("%03d%s", i, strings.Repeat("c", 240))})
	}
	s.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: tcs})
	c.waitLog("slave registered", "peer=wordy")
	go func() { // keep its session alive: answer nothing, read everything
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
}

// stopReading floods the master with InfoRequests on s, whose control
// stream is never read, until the master's queues hold more than n bytes
// or the session ends.
func stopReading(t *testing.T, srv *master.Server, s *transport.Session, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for id := uint64(1); srv.QueuedBytes() <= n; id++ {
		if err := s.Send(wire.MsgInfoRequest, id, wire.InfoRequest{}); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queued bytes stayed at %d", srv.QueuedBytes())
		}
	}
}

// TestHostileSlowReaderRevocation: a revoked client that stopped reading
// does not delay the revocation of another: each is gone within a second
// (a slow reader used to hold revocations for the 10 s write timeout).
func TestHostileSlowReaderRevocation(t *testing.T) {
	c := newCluster(t, unthrottled)
	c.bigInfo()
	h := c.honest()
	slow, err := c.dial(c.issue(certs.RoleClient, "slowpoke", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	stopReading(t, c.srv, slow, 64<<10)
	other, err := c.dial(c.issue(certs.RoleClient, "victim", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	revoke := func(name string) time.Time {
		if _, err := c.reg.RevokeName(name, "test"); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	slowAt := revoke("slowpoke")
	time.Sleep(100 * time.Millisecond) // a second registry change, after the first was seen
	otherAt := revoke("victim")
	for _, x := range []struct {
		s  *transport.Session
		at time.Time
	}{{other, otherAt}, {slow, slowAt}} {
		select {
		case <-x.s.Done():
		case <-time.After(time.Until(x.at.Add(time.Second))):
			t.Fatalf("a revoked peer still connected 1 s after its revocation")
		}
	}
	h.served(time.Second)
}

// TestHostileSendQueueBytes: what the master queues for clients that
// stopped reading is bounded in bytes, per session and per key; past the
// bound a session is disconnected as too slow, and others are served
// meanwhile. (Queues used to count messages, 4096 of any size.)
func TestHostileSendQueueBytes(t *testing.T) {
	const perPeer, perKey = 256 << 10, 320 << 10
	c := newCluster(t, unthrottled, func(cfg *master.Config) {
		cfg.Budget.SendQueueBytes, cfg.Budget.SendQueueBytesPerKey = perPeer, perKey
	})
	c.bigInfo()
	h := c.honest()
	b := c.issue(certs.RoleClient, "slowpoke", "1.0")
	var sessions []*transport.Session
	for range 4 {
		s, err := c.dial(b, false, "")
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if q := c.srv.QueuedBytes(); q > peak.Load() {
				peak.Store(q)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	for _, s := range sessions {
		wg.Go(func() {
			for id := uint64(1); id < 4_000; id++ {
				if s.Send(wire.MsgInfoRequest, id, wire.InfoRequest{}) != nil {
					return
				}
			}
		})
	}
	closed := 0
	for _, s := range sessions {
		select {
		case <-s.Done():
			closed++
		case <-time.After(5 * time.Second):
		}
	}
	close(stop)
	for _, s := range sessions {
		s.Close()
	}
	wg.Wait()
	if p := peak.Load(); p > perKey {
		t.Fatalf("%d bytes queued for one key, bound %d", p, perKey)
	}
	if closed == 0 {
		t.Fatal("no session that stopped reading was disconnected")
	}
	c.waitLog("peer too slow, disconnecting", "peer=slowpoke")
	h.served(time.Second)
}

// TestHostileLogFlood: refusals logging peer-controlled strings are cut
// and rate-limited per key: 50 Hellos with a 100 kB name grow the log by
// a few kilobytes, not megabytes.
func TestHostileLogFlood(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.LogBurst, cfg.Budget.LogPerPeer = 5, 1 })
	h := c.honest()
	b := c.issue(certs.RoleClient, "mallory", "1.0")
	before := len(c.logs.String())
	start := time.Now()
	for i := range 50 {
		name := strings.Repeat("\x1b[31m", 20_000) // 100 kB: refused at decode
		if i%2 == 1 {
			name = "\x1b[2J" // short: refused for not matching the certificate
		}
		if _, err := c.dialHello(b, false, wire.Hello{Name: name}); err == nil {
			t.Fatal("a Hello with a false name was admitted")
		}
	}
	ad, err := c.dial(c.issue(certs.RoleClient, "notadmin", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		ad.Send(wire.MsgAdminRequest, uint64(i+1), wire.AdminRequest{Args: []string{strings.Repeat("y", wire.MaxText)}})
	}
	recvUntil(t, ad, wire.MsgError)
	h.served(time.Second)
	logs := c.logs.String()[before:]
	if len(logs) > 32<<10 {
		t.Fatalf("log grew by %d bytes", len(logs))
	}
	if strings.Contains(logs, "\x1b") {
		t.Fatal("an escape sequence reached the log")
	}
	// 5 at once, then 1 a second, for each of the two keys.
	allowed := 2 * (5 + int(time.Since(start).Seconds()) + 1)
	if n := strings.Count(logs, "peer=mallory") + strings.Count(logs, "peer=notadmin"); n > allowed || n == 0 {
		t.Fatalf("%d lines logged about the two keys, rate allows %d:\n%s", n, allowed, logs)
	}
}

// unthrottled lifts the per-key message rate, for tests that need a flood.
func unthrottled(cfg *master.Config) { cfg.Budget.MessagesPerKey, cfg.Budget.MessageBurst = 1e9, 1e9 }

// TestHostileMessageRate: one key flooding requests is read at its rate
// (Budget.MessagesPerKey), and another key is served at once meanwhile.
func TestHostileMessageRate(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.MessagesPerKey, cfg.Budget.MessageBurst = 100, 10 })
	h := c.honest()
	s, err := c.dial(c.issue(certs.RoleClient, "mallory", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const n = 60
	for id := uint64(1); id <= n; id++ {
		if err := s.Send(wire.MsgInfoRequest, id, wire.InfoRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	h.served(100 * time.Millisecond)
	for got := 0; got < n; {
		if recvUntil(t, s, wire.MsgInfo).ID != 0 {
			got++
		}
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("%d requests answered in %v; 10 at once then 100 a second takes 0.5 s", n, d)
	}
}
