package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"kiln/transport/wire"
)

// helloTimeout bounds ReadHello when its ctx has no deadline.
const helloTimeout = 10 * time.Second

// refuseGrace is how long Refuse waits for the peer to close after it read
// the Refused, before closing the session itself.
const refuseGrace = 500 * time.Millisecond

// DialError reports that the TCP connection to Addr could not be made.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string {
	return "cannot reach master at " + e.Addr + ": " + plainNetErr(e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// HandshakeError reports a failed TLS handshake with Addr, including a
// client certificate the master rejects, which TLS 1.3 reveals only on the
// first read (so [Hello] returns it too).
type HandshakeError struct {
	Addr string
	Err  error
}

func (e *HandshakeError) Error() string {
	return "TLS handshake with " + e.Addr + " failed: " + plainNetErr(e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// plainNetErr words a network error in one short line, without the
// "dial tcp 1.2.3.4:5->..." prefixes.
func plainNetErr(err error) string {
	var sys *os.SyscallError
	var op *net.OpError
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the other side"
	case errors.As(err, &sys):
		return sys.Err.Error()
	case errors.As(err, &op) && op.Op == "remote error":
		return op.Error()
	case errors.As(err, &op) && op.Err != nil:
		return op.Err.Error()
	}
	return err.Error()
}

// Dial connects to a master at addr: TCP, then the TLS handshake with
// tlsCfg, both bounded by ctx, then [Client]. When tlsCfg has no ServerName
// the host of addr is used. It returns a *DialError when the master cannot
// be reached and a *HandshakeError when TLS fails.
func Dial(ctx context.Context, addr string, tlsCfg *tls.Config, cfg Config) (*Session, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &DialError{Addr: addr, Err: err}
	}
	tc := tlsCfg.Clone()
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			tc.ServerName = host
		}
	}
	conn := tls.Client(WrapTCP(raw), tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, &HandshakeError{Addr: addr, Err: err}
	}
	s, err := Client(conn, cfg)
	if err != nil {
		return nil, tlsFailure(addr, err)
	}
	s.peer = addr
	return s, nil
}

// Hello is the dialing side of the handshake: it sends h (with Proto set to
// wire.ProtocolVersion) and waits, bounded by ctx, for the master's Welcome.
// A Refused is returned as a *RefusedError; a client certificate the master
// rejected as a *HandshakeError. On any error the session is closed.
func Hello(ctx context.Context, s *Session, h wire.Hello) (wire.Welcome, error) {
	w, err := hello(ctx, s, h)
	if err != nil {
		s.Close()
	}
	return w, err
}

func hello(ctx context.Context, s *Session, h wire.Hello) (wire.Welcome, error) {
	var w wire.Welcome
	h.Proto = wire.ProtocolVersion
	if err := s.Send(wire.MsgHello, 0, &h); err != nil {
		return w, tlsFailure(s.peer, err)
	}
	e, err := s.recvCtx(ctx)
	if err != nil {
		return w, tlsFailure(s.peer, err)
	}
	switch e.Type {
	case wire.MsgWelcome:
		if err := wire.Decode(e, &w); err != nil {
			return w, fmt.Errorf("transport: welcome from %s: %w", s.peer, err)
		}
		return w, nil
	case wire.MsgRefused:
		var r wire.Refused
		if err := wire.Decode(e, &r); err != nil {
			return w, fmt.Errorf("transport: refusal from %s: %w", s.peer, err)
		}
		return w, NewRefusedError(r)
	}
	return w, fmt.Errorf("transport: hello to %s: %w: %v instead of Welcome", s.peer, ErrUnexpected, e.Type)
}

// tlsFailure turns a session that died from a TLS alert into a HandshakeError.
func tlsFailure(addr string, err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return &HandshakeError{Addr: addr, Err: op}
	}
	return err
}

// ReadHello is the master's side of the handshake: it reads the first
// control message, bounded by ctx (and by 10 s when ctx has no deadline),
// in a frame of at most wire.MaxHelloFrame bytes.
// A first message that is not a Hello, or a Hello of another protocol
// version, gives an error wrapping ErrBadHello; the master then answers with
// [Refuse] and wire.CodeBadHello. Checking the role, name and version
// against the registry is the caller's job.
func ReadHello(ctx context.Context, s *Session) (wire.Hello, error) {
	var h wire.Hello
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, helloTimeout)
		defer cancel()
	}
	e, err := s.recvCtxMax(ctx, min(wire.MaxHelloFrame, s.cfg.MaxFrame))
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		return h, fmt.Errorf("transport: %w from %s: %w", ErrBadHello, s.peer, err)
	case err != nil:
		return h, err
	case e.Type != wire.MsgHello:
		return h, fmt.Errorf("transport: %w from %s: first message is %v", ErrBadHello, s.peer, e.Type)
	}
	if err := wire.Decode(e, &h); err != nil {
		return h, fmt.Errorf("transport: %w from %s: %w", ErrBadHello, s.peer, err)
	}
	if h.Proto != wire.ProtocolVersion {
		return h, fmt.Errorf("transport: %w from %s: protocol version %d, want %d", ErrBadHello, s.peer, h.Proto, wire.ProtocolVersion)
	}
	return h, nil
}

// Refuse sends Refused{code, reason} and closes the session, making sure the
// Refused reaches the peer first: it waits for the frame to be written,
// then up to half a second for the peer to close before closing the
// session itself. It does not half-close the control stream first: yamux
// would keep a half-closed stream, and the session with it, for
// StreamCloseTimeout waiting for a FIN a hostile peer never sends.
func Refuse(s *Session, code, reason string) error {
	return RefuseWith(s, wire.Refused{Code: code, Reason: reason})
}

// RefuseWith is [Refuse] with every field of the Refused, e.g. RetryAfterMs.
// A peer that has already closed the session is not an error: it is gone
// either way (and yamux may report a write that raced the peer's close as
// failed even though the peer read it).
func RefuseWith(s *Session, r wire.Refused) error {
	defer s.Close()
	if err := s.Send(wire.MsgRefused, 0, &r); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil
		}
		return err
	}
	t := time.NewTimer(refuseGrace)
	defer t.Stop()
	select {
	case <-s.Done():
	case <-t.C:
	}
	return nil
}

// RefusedError is a refusal from the master. Its Error is one plain line for
// the user, e.g. "master refused this key: revoked".
type RefusedError struct {
	Code       string // a wire.Code* value
	Reason     string // the master's free-text detail
	RetryAfter time.Duration
}

// NewRefusedError returns the error for a Refused message, which may also
// arrive later in a session (revocation, kick, shutdown).
func NewRefusedError(r wire.Refused) *RefusedError {
	return &RefusedError{Code: r.Code, Reason: r.Reason, RetryAfter: time.Duration(r.RetryAfterMs) * time.Millisecond}
}

// refusalWords words the refusal codes for users.
func refusalWords(code string) (string, bool) {
	switch code {
	case wire.CodeUnknownKey:
		return "master refused this key: unknown key", true
	case wire.CodeRevokedKey:
		return "master refused this key: revoked", true
	case wire.CodeVersionRetired:
		return "master refused this key: version retired", true
	case wire.CodeRoleMismatch:
		return "master refused this key: wrong role for this port", true
	case wire.CodeBadHello:
		return "master refused: bad hello", true
	case wire.CodeBusy:
		return "master refused: busy", true
	case wire.CodeKicked:
		return "master disconnected this peer: kicked by an admin", true
	case wire.CodeShutdown:
		return "master disconnected this peer: shutting down", true
	case wire.CodeAlreadyConnected:
		return "master refused: this key already has a live session", true
	case wire.CodeReplaced:
		return "master disconnected this peer: replaced by a new session of the same key", true
	case wire.CodeCertExpired:
		return "master disconnected this peer: certificate expired", true
	}
	return "master refused: " + oneLine(code), false
}

func (e *RefusedError) Error() string {
	msg, known := refusalWords(e.Code)
	if (!known || e.Code == wire.CodeBadHello) && e.Reason != "" {
		msg += " (" + oneLine(e.Reason) + ")"
	}
	if e.RetryAfter > 0 {
		msg += ", retry in " + e.RetryAfter.Round(100*time.Millisecond).String()
	}
	return msg
}

// oneLine keeps s printable on one line and at most 200 bytes.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
