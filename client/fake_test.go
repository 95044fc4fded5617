package client

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLimits are the limits the fake master announces.
var testLimits = wire.Limits{MaxFrame: wire.MaxFrame, MaxSource: 1 << 20, MaxStdin: 1 << 20, MaxOutput: 1 << 20, MaxQueue: 8}

// fakeMaster is a loopback TLS listener speaking the master side of the
// handshake. Each accepted session is handed to the test as a *peer, which
// the test drives message by message.
type fakeMaster struct {
	addr   string
	client *certs.Bundle // a client bundle of the fake master's CA
	admin  *certs.Bundle
	slave  *certs.Bundle // a slave bundle with a sealing key, for sealed jobs
	peers  chan *peer

	mu     sync.Mutex
	refuse *wire.Refused // refuse the next Hello with this, when set
	hello  wire.Hello    // the last Hello received
	// features are echoed in Welcome, and limits announced (testLimits
	// when zero).
	features []string
	limits   wire.Limits

	ln  net.Listener
	wg  sync.WaitGroup
	all []*peer // every session accepted, closed at cleanup
}

// peer is one session accepted by the fake master.
type peer struct {
	t     *testing.T
	s     *transport.Session
	files chan file
}

type file struct {
	hdr    wire.FileHeader
	data   []byte
	inline bool // it came inside the Submit (hdr then holds its size and sum)
}

func newFakeMaster(t *testing.T) *fakeMaster {
	t.Helper()
	ca, err := certs.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	issue := func(role, name string, hosts ...string) *certs.Bundle {
		b, err := ca.Issue(certs.IssueRequest{Role: role, Name: name, Version: "1.0", Hosts: hosts})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mb := issue(certs.RoleMaster, "master", "127.0.0.1")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", auth.ServerConfig(mb))
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMaster{addr: ln.Addr().String(), ln: ln, peers: make(chan *peer, 4),
		client: issue(certs.RoleClient, "alice"), admin: issue(certs.RoleAdmin, "root"), slave: issue(certs.RoleSlave, "s1")}
	m.wg.Add(1)
	go m.acceptLoop(t)
	t.Cleanup(func() {
		ln.Close()
		m.mu.Lock()
		for _, p := range m.all {
			p.s.Close()
		}
		m.mu.Unlock()
		m.wg.Wait()
	})
	return m
}

func (m *fakeMaster) acceptLoop(t *testing.T) {
	defer m.wg.Done()
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p, err := m.handshake(ctx, t, conn)
		cancel()
		if err != nil || p == nil {
			continue
		}
		m.mu.Lock()
		m.all = append(m.all, p)
		m.mu.Unlock()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			p.acceptFiles()
		}()
		select {
		case m.peers <- p:
		default:
			p.s.Close() // nobody will drive it
		}
	}
}

// handshake runs TLS, the session and Hello; it returns nil after a refusal.
func (m *fakeMaster) handshake(ctx context.Context, t *testing.T, conn net.Conn) (*peer, error) {
	if err := conn.(*tls.Conn).HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	m.mu.Lock()
	maxFrame := m.limits.MaxFrame // the session refuses a frame over the cap it announces
	m.mu.Unlock()
	s, err := transport.Server(ctx, conn, transport.Config{MaxFrame: maxFrame})
	if err != nil {
		return nil, err
	}
	h, err := transport.ReadHello(ctx, s)
	if err != nil {
		s.Close()
		return nil, err
	}
	m.mu.Lock()
	m.hello = h
	refuse, features, limits := m.refuse, m.features, m.limits
	m.mu.Unlock()
	if limits == (wire.Limits{}) {
		limits = testLimits
	}
	if refuse != nil {
		transport.RefuseWith(s, *refuse)
		return nil, nil
	}
	if err := s.Send(wire.MsgWelcome, 0, wire.Welcome{SessionID: "s1", HeartbeatMs: 1000, Master: "fake", Limits: limits, Features: features}); err != nil {
		s.Close()
		return nil, err
	}
	return &peer{t: t, s: s, files: make(chan file, 8)}, nil
}

// acceptFiles reads every file stream into p.files until the session ends.
func (p *peer) acceptFiles() {
	defer close(p.files)
	for {
		hdr, r, err := p.s.AcceptFile(context.Background())
		if err != nil {
			if errors.Is(err, transport.ErrClosed) || errors.Is(err, context.Canceled) {
				return
			}
			select {
			case <-p.s.Done():
				return
			default:
				continue
			}
		}
		data, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			continue
		}
		select {
		case p.files <- file{hdr: hdr, data: data}:
		case <-p.s.Done():
			return
		}
	}
}

// dial connects a client with bundle b to the fake master and takes its peer.
func (m *fakeMaster) dial(t *testing.T, b *certs.Bundle) (*Client, *peer) {
	t.Helper()
	return m.dialConfig(t, Config{Bundle: b})
}

// dialConfig is dial with cfg (its Master set to the fake master's).
func (m *fakeMaster) dialConfig(t *testing.T, cfg Config) (*Client, *peer) {
	t.Helper()
	cfg.Master = m.addr
	c, err := Dial(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	select {
	case p := <-m.peers:
		return c, p
	case <-time.After(5 * time.Second):
		t.Fatal("fake master accepted no session")
	}
	return nil, nil
}

// recv reads the next control message and checks its type.
func (p *peer) recv(want wire.MsgType) wire.Envelope {
	p.t.Helper()
	env, err := p.s.Recv()
	if err != nil {
		p.t.Fatalf("fake master: recv: %v", err)
	}
	if env.Type != want {
		p.t.Fatalf("fake master: got %v, want %v", env.Type, want)
	}
	return env
}

// send writes one control message.
func (p *peer) send(t wire.MsgType, id uint64, body any) {
	p.t.Helper()
	if err := p.s.Send(t, id, body); err != nil {
		p.t.Fatalf("fake master: send %v: %v", t, err)
	}
}

// file waits for the next uploaded file.
func (p *peer) file() file {
	p.t.Helper()
	select {
	case f, ok := <-p.files:
		if !ok {
			p.t.Fatal("fake master: session ended before a file arrived")
		}
		return f
	case <-time.After(5 * time.Second):
		p.t.Fatal("fake master: no file arrived")
	}
	return file{}
}

// accept reads a Submit and its files, inline or on streams, and answers
// Accepted{job}.
func (p *peer) accept(job string) (wire.Submit, []file) {
	p.t.Helper()
	env := p.recv(wire.MsgSubmit)
	var sub wire.Submit
	if err := wire.Decode(env, &sub); err != nil {
		p.t.Fatal(err)
	}
	take := func(kind string, data, sum []byte) file {
		if len(data) == 0 {
			return p.file()
		}
		return file{hdr: wire.FileHeader{JobID: strconv.FormatUint(env.ID, 10), Kind: kind, Size: int64(len(data)),
			SHA256: sum, Sealed: sub.Sealed}, data: data, inline: true}
	}
	files := []file{take(wire.FileSource, sub.Source, sub.SourceSHA256)}
	if sub.StdinSize > 0 {
		files = append(files, take(wire.FileStdin, sub.Stdin, sub.StdinSHA256))
	}
	p.send(wire.MsgAccepted, env.ID, wire.Accepted{JobID: job})
	return sub, files
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
