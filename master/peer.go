package master

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"kiln/auth"
	"kiln/transport"
	"kiln/transport/wire"

	"golang.org/x/time/rate"
)

// peer is one admitted session, slave or client.
type peer struct {
	id      auth.Identity
	cert    *x509.Certificate // the peer's verified TLS leaf certificate
	hello   wire.Hello
	sess    *transport.Session
	addr    string
	since   time.Time
	log     *slog.Logger
	q       sendQueue
	done    chan struct{} // closed when the session is being closed
	once    sync.Once
	metrics *Metrics
	// bg runs a function on a goroutine the server waits for at shutdown.
	bg func(func())
	// refuseTimeout bounds a refusal's wait for the peer.
	refuseTimeout time.Duration
	// rate is the message rate of the peer's key, shared by its sessions
	// (clients and admins; nil for slaves).
	rate *rate.Limiter
}

// sendQueue holds the encoded messages waiting for a peer, counted in
// bytes against the peer's bound and the shared ones above it (its key's,
// the server's) until they are written: the batch the send loop is
// writing still counts.
type sendQueue struct {
	mu      sync.Mutex
	msgs    []wire.Envelope
	bytes   int64         // queued and being written
	writing int64         // of bytes, the batch being written
	limit   int64         // Budget.SendQueueBytes
	shared  []*queueBytes // the key's and the server's counters
	wake    chan struct{}
}

// queueBytes counts the bytes queued for several peers against a limit
// (Budget.SendQueueBytesPerKey, Budget.MaxQueuedBytes).
type queueBytes struct {
	n     atomic.Int64
	limit int64
}

// envelopeCost is what a queued message is charged: its body and a
// generous allowance for the envelope and slice header.
func envelopeCost(e wire.Envelope) int64 { return int64(len(e.Body)) + 64 }

// queued returns the bytes queued and being written.
func (q *sendQueue) queued() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}

// push queues e, or reports false when it would take the peer's queue or
// a shared one past its bound.
func (q *sendQueue) push(e wire.Envelope) (ok bool, queued int64) {
	c := envelopeCost(e)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.bytes+c > q.limit {
		return false, q.bytes
	}
	for i, sh := range q.shared {
		if sh.n.Add(c) > sh.limit {
			for _, back := range q.shared[:i+1] {
				back.n.Add(-c)
			}
			return false, q.bytes
		}
	}
	q.msgs = append(q.msgs, e)
	q.bytes += c
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true, q.bytes
}

// sendBatch is about the most a peer's send loop writes at once: what is
// queued, oldest first, up to the message that reaches it.
const sendBatch = 32 << 10

// popBatch appends to dst the oldest messages, at least one if any is
// queued, until they hold sendBatch bytes, and takes them off the queue.
// Their bytes stay counted until sent gives them back, once written.
func (q *sendQueue) popBatch(dst []wire.Envelope) ([]wire.Envelope, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var c int64
	n := 0
	for n < len(q.msgs) && c < sendBatch {
		c += envelopeCost(q.msgs[n])
		n++
	}
	dst = append(dst, q.msgs[:n]...)
	clear(q.msgs[:n])
	if n == len(q.msgs) {
		q.msgs = q.msgs[:0] // reuse the array from its start
	} else {
		q.msgs = q.msgs[n:]
	}
	q.writing += c
	return dst, c
}

// sent gives back the bytes of a batch popBatch handed out, once it is
// written (or failed to be).
func (q *sendQueue) sent(c int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.writing -= c
	q.release(c)
}

// drop releases everything queued (the peer is gone); a batch being
// written is given back by sent.
func (q *sendQueue) drop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.release(q.bytes - q.writing)
	q.msgs = nil
}

func (q *sendQueue) release(c int64) {
	q.bytes -= c
	for _, sh := range q.shared {
		sh.n.Add(-c)
	}
}

func (s *Server) newPeer(id auth.Identity, hello wire.Hello, sess *transport.Session, addr string) *peer {
	return &peer{
		id: id, hello: hello, sess: sess, addr: addr, since: s.cfg.Now(),
		log: s.peerLog(id.Fingerprint).With("peer", logString(id.Name), "role", id.Role, "fingerprint", short(id.Fingerprint), "addr", addr),
		q: sendQueue{limit: s.cfg.Budget.SendQueueBytes, shared: []*queueBytes{s.queued},
			wake: make(chan struct{}, 1)},
		done:          make(chan struct{}),
		metrics:       s.cfg.Metrics,
		bg:            s.goRun,
		refuseTimeout: s.cfg.Budget.RefuseTimeout,
	}
}

// send queues a message for the peer without blocking; it is safe to call
// under Server.mu. When the peer's queue (or every peer's together) would
// grow past its bound in bytes, the peer is too slow and is disconnected.
func (p *peer) send(t wire.MsgType, id uint64, body any) {
	select {
	case <-p.done:
		return
	default:
	}
	e, err := wire.Encode(t, id, body)
	if err != nil {
		p.log.Error("message not encoded", "type", t, "err", err)
		return
	}
	p.push(e)
}

// sendEncoded is send for a message already encoded (an Output relayed
// as the slave sent it: see wire.ParseOutput).
func (p *peer) sendEncoded(e wire.Envelope) {
	select {
	case <-p.done:
		return
	default:
	}
	p.push(e)
}

// push queues e, or disconnects the peer when that would take its queue
// (or every peer's together) past its bound.
func (p *peer) push(e wire.Envelope) {
	if ok, queued := p.q.push(e); !ok {
		p.log.Warn("peer too slow, disconnecting", "queued_bytes", queued)
		p.close()
	}
}

// sendLoop writes queued messages until the peer closes: whatever is
// queued when it looks, in one write (see Session.SendEnvelopes), so that
// under load the messages of many jobs share a record and a system call.
func (p *peer) sendLoop() {
	defer p.q.drop()
	var batch []wire.Envelope
	for {
		var cost int64
		batch, cost = p.q.popBatch(batch[:0])
		if len(batch) == 0 {
			select {
			case <-p.done:
				return
			case <-p.q.wake:
			}
			continue
		}
		err := p.sess.SendEnvelopes(batch)
		clear(batch) // the bodies are sent: do not keep them alive
		p.q.sent(cost)
		if err != nil {
			p.close()
			return
		}
	}
}

// close ends the session. Safe to call many times.
func (p *peer) close() {
	p.once.Do(func() {
		close(p.done)
		p.sess.Close()
	})
}

// live reports whether the session is open and the peer sent something
// (a message or a keepalive answer) within silent.
func (p *peer) live(now time.Time, silent time.Duration) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	return now.Sub(p.sess.LastRead()) < silent
}

// refuse tells the peer why it is being disconnected, then closes it. It
// never waits on the peer: the Refused is written in the background, and
// the session is closed after the refusal timeout whether or not the peer
// read it, so one peer that stopped reading delays no one.
func (p *peer) refuse(code, reason string) {
	p.refuseWith(wire.Refused{Code: code, Reason: reason})
}

func (p *peer) refuseWith(r wire.Refused) {
	p.once.Do(func() {
		close(p.done)
		stop := time.AfterFunc(p.refuseTimeout, func() { p.sess.Close() })
		p.bg(func() {
			defer stop.Stop()
			if err := transport.RefuseWith(p.sess, r); err != nil {
				p.log.Debug("refusal not delivered", "err", err)
			}
			p.sess.Close()
		})
	})
}

// short abbreviates a fingerprint for logs and tables.
func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return fp
}

// handleConn runs the TLS handshake and the Hello check, then hands the
// session to the slave or client loop. It owns the connection and the
// handshake slot taken by acceptLoop, which it gives back once the peer is
// admitted or refused.
func (s *Server) handleConn(ctx context.Context, raw net.Conn, p port) {
	pr := s.handshake(ctx, raw, p)
	<-s.handshakes
	if pr == nil {
		return
	}
	defer s.unclaim(pr, p)
	expire := time.AfterFunc(max(pr.cert.NotAfter.Sub(s.cfg.Now()), 0), func() {
		pr.log.Warn("certificate expired: disconnecting peer", "not_after", pr.cert.NotAfter)
		s.cfg.Metrics.refused(wire.CodeCertExpired)
		pr.refuse(wire.CodeCertExpired, "certificate expired at "+pr.cert.NotAfter.UTC().Format(time.RFC3339))
	})
	defer expire.Stop()
	s.goRun(pr.sendLoop)
	if p == portSlave {
		s.runSlave(ctx, &slaveConn{peer: pr})
	} else {
		s.runClient(ctx, newClientConn(pr, s.cfg.Budget.Jobs))
	}
	pr.close()
}

// handshake runs TLS, the session setup, the Hello and the admission
// checks within the handshake timeout. It returns the admitted peer,
// welcomed and counted against its key, or nil when the connection was
// refused (and closed).
func (s *Server) handshake(ctx context.Context, raw net.Conn, p port) *peer {
	addr := raw.RemoteAddr().String()
	hctx, cancel := context.WithTimeout(ctx, s.cfg.Budget.HandshakeTimeout)
	defer cancel()
	conn := tls.Server(transport.WrapTCP(raw), s.tlsCfg)
	if err := conn.HandshakeContext(hctx); err != nil {
		s.peerLog(addr).Warn("TLS handshake refused", append([]any{"port", p, "addr", addr}, unverifiedPeer(err, s.cfg.Now())...)...)
		s.cfg.Metrics.refused("tls")
		raw.Close()
		return nil
	}
	id, err := auth.PeerIdentity(conn.ConnectionState())
	if err != nil {
		s.peerLog(addr).Warn("peer certificate refused", "port", p, "addr", addr, "err", err)
		s.cfg.Metrics.refused("tls")
		conn.Close()
		return nil
	}
	log := s.peerLog(id.Fingerprint)
	var sconn net.Conn = conn
	if s.cfg.WrapConn != nil {
		sconn = s.cfg.WrapConn(conn)
	}
	sess, err := transport.Server(hctx, sconn, s.cfg.Transport)
	if err != nil {
		log.Warn("session refused", "port", p, "addr", addr, "peer", logString(id.Name), "err", err)
		conn.Close()
		return nil
	}
	hello, err := transport.ReadHello(hctx, sess)
	if err != nil {
		log.Warn("bad hello", "port", p, "addr", addr, "peer", logString(id.Name), "err", logString(err.Error()))
		s.cfg.Metrics.refused(wire.CodeBadHello)
		// A peer that sent garbage or an oversized Hello gets its answer
		// without the grace a refused key gets: until the session is
		// closed, its transport buffers what the peer keeps sending.
		s.refuseNow(sess, wire.Refused{Code: wire.CodeBadHello, Reason: err.Error()}, badHelloWait)
		return nil
	}
	refusal := s.admit(p, id, hello)
	pr := s.newPeer(id, hello, sess, addr)
	pr.cert = conn.ConnectionState().PeerCertificates[0]
	if refusal.Code == "" {
		refusal = s.claim(pr, p)
	}
	if refusal.Code != "" {
		log.Warn("peer refused", "port", p, "addr", addr, "peer", logString(id.Name), "role", id.Role,
			"fingerprint", short(id.Fingerprint), "code", refusal.Code, "reason", logString(refusal.Reason))
		s.cfg.Metrics.refused(refusal.Code)
		s.refuseNow(sess, refusal, s.cfg.Budget.RefuseTimeout)
		return nil
	}
	welcome := wire.Welcome{
		SessionID:   fmt.Sprintf("%s-%d", id.Name, pr.since.UnixNano()),
		HeartbeatMs: s.cfg.HeartbeatInterval.Milliseconds(),
		Master:      s.cfg.Name,
		Limits:      s.cfg.Limits,
		Features:    negotiate(hello.Features),
	}
	if err := sess.Send(wire.MsgWelcome, 0, welcome); err != nil {
		pr.log.Warn("welcome not delivered", "err", err)
		s.unclaim(pr, p)
		sess.Close()
		return nil
	}
	pr.log.Info("peer connected", "version", logString(hello.Version))
	return pr
}

// badHelloWait bounds the refusal of a bad Hello.
const badHelloWait = 50 * time.Millisecond

// refuseNow refuses a session that was never admitted, closing it after
// wait at the latest.
func (s *Server) refuseNow(sess *transport.Session, r wire.Refused, wait time.Duration) {
	stop := time.AfterFunc(wait, func() { sess.Close() })
	defer stop.Stop()
	transport.RefuseWith(sess, r)
	sess.Close()
}

// claim counts an admitted peer against its key: a slave key holds one
// session, and a new one is refused with already_connected while the old
// one is live (it replaces a silent one); a client or admin key holds at
// most Budget.MaxSessionsPerKey. It returns a refusal, or a zero Refused.
func (s *Server) claim(pr *peer, p port) wire.Refused {
	b := s.cfg.Budget
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == portSlave {
		if old := s.slaveKeys[pr.id.Name]; old != nil {
			silentFor := s.cfg.Now().Sub(old.sess.LastRead())
			if old.live(s.cfg.Now(), b.SilentAfter) {
				return wire.Refused{Code: wire.CodeAlreadyConnected,
					Reason:       fmt.Sprintf("slave %s already has a live session (from %s)", pr.id.Name, old.addr),
					RetryAfterMs: max(b.SilentAfter-silentFor, time.Second).Milliseconds()}
			}
		}
		s.slaveKeys[pr.id.Name] = pr
		return wire.Refused{}
	}
	k := s.keySessions[pr.id.Fingerprint]
	if k == nil {
		k = &keySessions{queued: queueBytes{limit: b.SendQueueBytesPerKey},
			rate: rate.NewLimiter(rate.Limit(b.MessagesPerKey), b.MessageBurst)}
		s.keySessions[pr.id.Fingerprint] = k
	}
	if k.n >= b.MaxSessionsPerKey {
		return wire.Refused{Code: wire.CodeBusy,
			Reason:       fmt.Sprintf("this key already has %d sessions (at most %d)", k.n, b.MaxSessionsPerKey),
			RetryAfterMs: b.BusyRetryAfter.Milliseconds()}
	}
	k.n++
	pr.q.shared = []*queueBytes{&k.queued, s.queued}
	pr.rate = k.rate
	return wire.Refused{}
}

// keySessions is what the sessions of one client or admin key hold
// together: their count and their queued bytes.
type keySessions struct {
	n      int
	queued queueBytes
	rate   *rate.Limiter // Budget.MessagesPerKey
}

// throttle waits until the peer's key may send another control message
// (Budget.MessagesPerKey), or the session or ctx ends.
func (p *peer) throttle(ctx context.Context) {
	if p.rate == nil {
		return
	}
	r := p.rate.Reserve()
	d := r.Delay()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.done:
		r.Cancel()
	case <-ctx.Done():
		r.Cancel()
	}
}

// unclaim undoes claim when the session ends.
func (s *Server) unclaim(pr *peer, p port) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == portSlave {
		if s.slaveKeys[pr.id.Name] == pr {
			delete(s.slaveKeys, pr.id.Name)
		}
		return
	}
	if k := s.keySessions[pr.id.Fingerprint]; k != nil {
		if k.n--; k.n <= 0 {
			delete(s.keySessions, pr.id.Fingerprint)
		}
	}
}

// admit decides whether a peer with a verified certificate may stay. It
// returns the refusal, or a zero Refused to admit.
func (s *Server) admit(p port, id auth.Identity, h wire.Hello) wire.Refused {
	code, reason := s.admitCode(p, id, h)
	return wire.Refused{Code: code, Reason: reason}
}

func (s *Server) admitCode(p port, id auth.Identity, h wire.Hello) (code, reason string) {
	if h.Proto != wire.ProtocolVersion {
		return wire.CodeBadHello, fmt.Sprintf("protocol %d not supported (master speaks %d)", h.Proto, wire.ProtocolVersion)
	}
	switch {
	case p == portSlave && id.Role != wire.RoleSlave:
		return wire.CodeRoleMismatch, fmt.Sprintf("a %s key cannot connect on the slave port", id.Role)
	case p == portClient && id.Role != wire.RoleClient && id.Role != wire.RoleAdmin:
		return wire.CodeRoleMismatch, fmt.Sprintf("a %s key cannot connect on the client port", id.Role)
	case h.Role != id.Role:
		return wire.CodeRoleMismatch, fmt.Sprintf("hello says role %q but the certificate says %q", h.Role, id.Role)
	case h.Name != id.Name:
		return wire.CodeBadHello, fmt.Sprintf("hello says name %q but the certificate says %q", h.Name, id.Name)
	}
	err := s.cfg.Registry.Check(id, h.Version)
	if errors.Is(err, auth.ErrUnknownKey) {
		// The key may have been issued since the last poll of the registry
		// file: look again before refusing.
		s.cfg.Registry.Refresh()
		err = s.cfg.Registry.Check(id, h.Version)
	}
	if err != nil {
		return refusalCode(err), err.Error()
	}
	return "", ""
}

// refusalCode maps a registry error to its stable wire code.
func refusalCode(err error) string {
	switch {
	case errors.Is(err, auth.ErrRevoked):
		return wire.CodeRevokedKey
	case errors.Is(err, auth.ErrRetired):
		return wire.CodeVersionRetired
	case errors.Is(err, auth.ErrRoleMismatch):
		return wire.CodeRoleMismatch
	case errors.Is(err, auth.ErrVersionMismatch):
		return wire.CodeBadHello
	}
	return wire.CodeUnknownKey
}

// recheckPeers runs after every registry change: a live peer whose key was
// revoked or whose version was retired is refused and disconnected.
func (s *Server) recheckPeers() {
	refuseAll(s.peers(), func(p *peer) (string, string, bool) {
		err := s.cfg.Registry.Check(p.id, p.hello.Version)
		if err == nil {
			return "", "", false
		}
		code := refusalCode(err)
		p.log.Warn("registry change: disconnecting peer", "code", code, "reason", err)
		s.cfg.Metrics.refused(code)
		return code, err.Error(), true
	})
}

// unverifiedPeer returns log attributes for a handshake that failed: the
// error, and when the peer's certificate was readable but failed
// verification (expired, say), who it claims to be and, for an expired
// one, since when, so that an operator can tell whose key to renew. The
// name is unverified, and logged as such.
func unverifiedPeer(err error, now time.Time) []any {
	attrs := []any{"err", err}
	var ve *tls.CertificateVerificationError
	if !errors.As(err, &ve) || len(ve.UnverifiedCertificates) == 0 {
		return attrs
	}
	cert := ve.UnverifiedCertificates[0]
	id, ierr := auth.IdentityOf(cert)
	if ierr != nil {
		return attrs
	}
	attrs = append(attrs, "claimed_peer", id.Name, "role", id.Role, "fingerprint", short(id.Fingerprint))
	if now.After(cert.NotAfter) {
		attrs = append(attrs, "expired", cert.NotAfter.UTC().Format(time.DateOnly))
	}
	return attrs
}

// QueuedBytes returns the bytes of messages queued for all peers, counted
// against Budget.MaxQueuedBytes.
func (s *Server) QueuedBytes() int64 { return s.queued.n.Load() }
