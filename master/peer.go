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
	"time"

	"kiln/auth"
	"kiln/transport"
	"kiln/transport/wire"
)

// sendQueue is how many control messages may wait for a slow peer before
// the master gives up on it. A client that stops reading must not stall the
// slave whose output is being forwarded to it.
const sendQueue = 4096

// peer is one admitted session, slave or client.
type peer struct {
	id      auth.Identity
	cert    *x509.Certificate // the peer's verified TLS leaf certificate
	hello   wire.Hello
	sess    *transport.Session
	addr    string
	since   time.Time
	log     *slog.Logger
	out     chan outMsg
	done    chan struct{} // closed when the session is being closed
	once    sync.Once
	metrics *Metrics
}

type outMsg struct {
	t    wire.MsgType
	id   uint64
	body any
}

func newPeer(id auth.Identity, hello wire.Hello, sess *transport.Session, addr string, now time.Time, log *slog.Logger, m *Metrics) *peer {
	return &peer{
		id: id, hello: hello, sess: sess, addr: addr, since: now,
		log:     log.With("peer", id.Name, "role", id.Role, "fingerprint", short(id.Fingerprint), "addr", addr),
		out:     make(chan outMsg, sendQueue),
		done:    make(chan struct{}),
		metrics: m,
	}
}

// send queues a message for the peer without blocking. When the queue is
// full the peer is too slow and is disconnected.
func (p *peer) send(t wire.MsgType, id uint64, body any) {
	select {
	case <-p.done:
		return
	default:
	}
	select {
	case p.out <- outMsg{t, id, body}:
	default:
		p.log.Warn("peer too slow, disconnecting", "queued", len(p.out))
		p.close()
	}
}

// sendLoop writes queued messages until the peer closes.
func (p *peer) sendLoop() {
	for {
		select {
		case <-p.done:
			return
		case m := <-p.out:
			if err := p.sess.Send(m.t, m.id, m.body); err != nil {
				p.close()
				return
			}
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

// refuse tells the peer why it is being disconnected, then closes it.
func (p *peer) refuse(code, reason string) {
	p.once.Do(func() {
		close(p.done)
		if err := transport.Refuse(p.sess, code, reason); err != nil {
			p.log.Debug("refusal not delivered", "err", err)
		}
		p.sess.Close()
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
// session to the slave or client loop. It owns the connection.
func (s *Server) handleConn(ctx context.Context, raw net.Conn, p port) {
	addr := raw.RemoteAddr().String()
	hctx, cancel := context.WithTimeout(ctx, s.cfg.Budget.HandshakeTimeout)
	defer cancel()
	conn := tls.Server(raw, s.tlsCfg)
	if err := conn.HandshakeContext(hctx); err != nil {
		s.log.Warn("TLS handshake refused", append([]any{"port", p, "addr", addr}, unverifiedPeer(err, s.cfg.Now())...)...)
		s.cfg.Metrics.refused("tls")
		raw.Close()
		return
	}
	id, err := auth.PeerIdentity(conn.ConnectionState())
	if err != nil {
		s.log.Warn("peer certificate refused", "port", p, "addr", addr, "err", err)
		s.cfg.Metrics.refused("tls")
		conn.Close()
		return
	}
	var sconn net.Conn = conn
	if s.cfg.WrapConn != nil {
		sconn = s.cfg.WrapConn(conn)
	}
	sess, err := transport.Server(hctx, sconn, s.cfg.Transport)
	if err != nil {
		s.log.Warn("session refused", "port", p, "addr", addr, "peer", id.Name, "err", err)
		conn.Close()
		return
	}
	hello, err := transport.ReadHello(hctx, sess)
	if err != nil {
		s.log.Warn("bad hello", "port", p, "addr", addr, "peer", id.Name, "err", err)
		s.cfg.Metrics.refused(wire.CodeBadHello)
		transport.Refuse(sess, wire.CodeBadHello, err.Error())
		sess.Close()
		return
	}
	if code, reason := s.admit(p, id, hello); code != "" {
		s.log.Warn("peer refused", "port", p, "addr", addr, "peer", id.Name, "role", id.Role,
			"fingerprint", short(id.Fingerprint), "code", code, "reason", reason)
		s.cfg.Metrics.refused(code)
		transport.Refuse(sess, code, reason)
		sess.Close()
		return
	}
	pr := newPeer(id, hello, sess, addr, s.cfg.Now(), s.log, s.cfg.Metrics)
	pr.cert = conn.ConnectionState().PeerCertificates[0]
	welcome := wire.Welcome{
		SessionID:   fmt.Sprintf("%s-%d", id.Name, pr.since.UnixNano()),
		HeartbeatMs: s.cfg.HeartbeatInterval.Milliseconds(),
		Master:      s.cfg.Name,
		Limits:      s.cfg.Limits,
	}
	if err := sess.Send(wire.MsgWelcome, 0, welcome); err != nil {
		pr.log.Warn("welcome not delivered", "err", err)
		sess.Close()
		return
	}
	pr.log.Info("peer connected", "version", hello.Version)
	s.goRun(pr.sendLoop)
	if p == portSlave {
		s.runSlave(ctx, &slaveConn{peer: pr})
	} else {
		s.runClient(ctx, newClientConn(pr, s.cfg.Budget.Jobs))
	}
	pr.close()
}

// admit decides whether a peer with a verified certificate may stay. It
// returns a refusal code and reason, or "" to admit.
func (s *Server) admit(p port, id auth.Identity, h wire.Hello) (code, reason string) {
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
