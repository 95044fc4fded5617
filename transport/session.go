package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"kiln/transport/wire"
)

// Errors callers branch on. Match them with errors.Is.
var (
	// ErrClosed reports that the session is closed, locally or by the peer;
	// the error wraps the cause when one is known.
	ErrClosed = errors.New("session closed")
	// ErrProtocol reports a peer that does not speak the Kiln session
	// protocol (yamux), e.g. a client sending an HTTP request.
	ErrProtocol = errors.New("peer does not speak the Kiln session protocol")
	// ErrBadHello reports a first control message that is not a valid Hello.
	ErrBadHello = errors.New("bad hello")
	// ErrUnexpected reports a control message that does not fit the flow.
	ErrUnexpected = errors.New("unexpected message")
	// ErrChecksum reports a file whose bytes do not match its SHA-256.
	ErrChecksum = errors.New("file checksum mismatch")
	// ErrShortFile reports a file stream that ended before its size.
	ErrShortFile = errors.New("file stream ended early")
	// ErrFileSize reports a reader given to SendFile whose length is not
	// the header's Size.
	ErrFileSize = errors.New("file length does not match header size")
)

// Config tunes a [Session]. A zero field takes its value from
// [DefaultConfig], so the zero Config is usable. Config is comparable.
type Config struct {
	// KeepAliveInterval is how often yamux pings the peer; a ping
	// unanswered within ConnectionWriteTimeout closes the session.
	KeepAliveInterval time.Duration
	// ConnectionWriteTimeout bounds every write: a control frame, a ping,
	// and the wait for a file header.
	ConnectionWriteTimeout time.Duration
	// MaxStreamWindow is the yamux receive window of each stream, in bytes
	// (at least 256 KiB). It is also the most a peer can make this side
	// buffer per stream.
	MaxStreamWindow uint32
	// MaxFrame caps control frames and file headers, both ways.
	MaxFrame int
	// AcceptBacklog is how many file streams may wait for AcceptFile.
	AcceptBacklog int
	// StreamCloseTimeout is how long a half-closed file stream may wait for
	// the peer's close before it is reset.
	StreamCloseTimeout time.Duration
	// Logger receives yamux diagnostics at debug level; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration Kiln uses: 5 s keepalive, 10 s
// write timeout, 1 MiB stream windows (measured as fast as 16 MiB here, and
// 16 times less memory a peer can make the master hold per stream), 1 MiB
// frames, 16 file streams waiting for accept. A stream the receiver has not
// read holds up to twice its window in yamux's buffer (which grows by
// doubling): 512 KiB waiting for accept, 2 MiB once accepted, so the
// backlog is what bounds a session's unread bytes (16 x 512 KiB); at 64 one
// client key's sessions made a master hold 4.8 GB of streams it never read.
func DefaultConfig() Config {
	return Config{
		KeepAliveInterval:      5 * time.Second,
		ConnectionWriteTimeout: 10 * time.Second,
		MaxStreamWindow:        1 << 20,
		MaxFrame:               wire.MaxFrame,
		AcceptBacklog:          16,
		StreamCloseTimeout:     2 * time.Minute,
	}
}

// withDefaults fills the zero fields of c from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.KeepAliveInterval <= 0 {
		c.KeepAliveInterval = d.KeepAliveInterval
	}
	if c.ConnectionWriteTimeout <= 0 {
		c.ConnectionWriteTimeout = d.ConnectionWriteTimeout
	}
	if c.MaxStreamWindow == 0 {
		c.MaxStreamWindow = d.MaxStreamWindow
	}
	c.MaxStreamWindow = max(c.MaxStreamWindow, 256<<10)
	if c.MaxFrame <= 0 {
		c.MaxFrame = d.MaxFrame
	}
	if c.AcceptBacklog <= 0 {
		c.AcceptBacklog = d.AcceptBacklog
	}
	if c.StreamCloseTimeout <= 0 {
		c.StreamCloseTimeout = d.StreamCloseTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// yamux returns the yamux configuration for c, which has its defaults.
func (c Config) yamux() *yamux.Config {
	return &yamux.Config{
		AcceptBacklog:          c.AcceptBacklog,
		EnableKeepAlive:        true,
		KeepAliveInterval:      c.KeepAliveInterval,
		ConnectionWriteTimeout: c.ConnectionWriteTimeout,
		MaxStreamWindowSize:    c.MaxStreamWindow,
		StreamCloseTimeout:     c.StreamCloseTimeout,
		Logger:                 yamuxLogger{c.Logger},
	}
}

// yamuxLogger sends yamux's log lines to slog at debug level.
type yamuxLogger struct{ l *slog.Logger }

func (y yamuxLogger) Print(v ...any) { y.l.Debug(strings.TrimSpace(fmt.Sprint(v...))) }
func (y yamuxLogger) Printf(f string, v ...any) {
	y.l.Debug(strings.TrimSpace(fmt.Sprintf(f, v...)))
}
func (y yamuxLogger) Println(v ...any) { y.l.Debug(strings.TrimSpace(fmt.Sprintln(v...))) }

// Session is a yamux session over one connection, with a control stream
// carrying framed messages and any number of file streams.
//
// Send, SendFile, Close, Done, RemoteAddr and Conn are safe for concurrent
// use. Recv has one caller at a time (the session's reader); AcceptFile has
// one caller at a time too.
type Session struct {
	mux  *yamux.Session
	wc   *watchedConn // what yamux reads and writes
	conn net.Conn     // the caller's connection under wc
	ctrl *yamux.Stream
	cfg  Config
	peer string

	wmu  sync.Mutex // serialises whole frames on the control stream
	wbuf []byte

	r    *bufio.Reader // owned by the Recv caller
	rerr error         // sticky receive error, owned by the Recv caller

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	once   sync.Once
	wg     sync.WaitGroup // goroutines started by the session
}

// Client starts the dialing side of a session over conn (normally a TLS
// connection) and opens the control stream, stream 1. On error conn is
// closed.
func Client(conn net.Conn, cfg Config) (*Session, error) {
	cfg = cfg.withDefaults()
	wc := newWatchedConn(conn)
	mux, err := yamux.Client(wc, cfg.yamux())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("transport: %w", err)
	}
	ctrl, err := mux.OpenStream()
	if err != nil {
		if cause := wc.alert(); cause != nil {
			err = cause
		} else if cause := muxCause(mux, cfg.AcceptBacklog); cause != nil {
			err = cause
		}
		mux.Close()
		return nil, fmt.Errorf("transport: open control stream to %s: %w", conn.RemoteAddr(), protocolErr(err))
	}
	return newSession(mux, wc, ctrl, cfg), nil
}

// Server starts the accepting side of a session over conn and waits, bounded
// by ctx, for the peer to open the control stream. A peer that does not
// speak yamux gets an error wrapping ErrProtocol. On error conn is closed.
func Server(ctx context.Context, conn net.Conn, cfg Config) (*Session, error) {
	cfg = cfg.withDefaults()
	wc := newWatchedConn(conn)
	mux, err := yamux.Server(wc, cfg.yamux())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("transport: %w", err)
	}
	ctrl, err := mux.AcceptStreamWithContext(ctx)
	if err == nil && ctrl.StreamID() != 1 {
		err = fmt.Errorf("%w: first stream is %d, not 1", ErrProtocol, ctrl.StreamID())
	}
	if err != nil {
		mux.Close()
		return nil, fmt.Errorf("transport: session with %s: %w", conn.RemoteAddr(), protocolErr(err))
	}
	return newSession(mux, wc, ctrl, cfg), nil
}

// protocolErr marks the yamux errors that mean the peer speaks something else.
func protocolErr(err error) error {
	for _, e := range []error{yamux.ErrInvalidVersion, yamux.ErrInvalidMsgType, yamux.ErrRecvWindowExceeded,
		yamux.ErrUnexpectedFlag, yamux.ErrDuplicateStream} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w by peer before the control stream", ErrClosed)
	}
	return err
}

func newSession(mux *yamux.Session, wc *watchedConn, ctrl *yamux.Stream, cfg Config) *Session {
	conn := wc.Conn
	return &Session{
		mux:  mux,
		wc:   wc,
		conn: conn,
		ctrl: ctrl,
		cfg:  cfg,
		peer: conn.RemoteAddr().String(),
		r:    bufio.NewReaderSize(ctrl, 64<<10),
	}
}

// Send writes one message on the control stream. It is safe for concurrent
// use: frames are written whole, one at a time. A body over the frame cap is
// not sent (the error wraps wire.ErrFrameTooLarge) and the session stays
// up; a write that fails or exceeds ConnectionWriteTimeout closes the
// session, since the stream may hold a partial frame.
func (s *Session) Send(t wire.MsgType, id uint64, body any) error {
	e, err := wire.Encode(t, id, body)
	if err != nil {
		return fmt.Errorf("transport: send %v: %w", t, err)
	}
	return s.SendEnvelope(e)
}

// SendEnvelope is [Session.Send] for a message already encoded (for
// example one queued as bytes, so that the queue can count them).
func (s *Session) SendEnvelope(e wire.Envelope) error {
	return s.SendEnvelopes([]wire.Envelope{e})
}

// SendEnvelopes is [Session.SendEnvelope] for several messages, written
// in order with one write on the control stream: one yamux frame, and as
// few TLS records and system calls as their size allows (see
// [watchedConn]), where sending them one by one costs one of each per
// message. A message over the frame cap is not sent, nor any after it
// (the error wraps wire.ErrFrameTooLarge); those before it are.
func (s *Session) SendEnvelopes(es []wire.Envelope) error {
	if len(es) == 0 {
		return nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	b := s.wbuf[:0]
	var tooLarge error
	t := es[0].Type
	for _, e := range es {
		var err error
		if b, err = wire.AppendFrame(b, e, s.cfg.MaxFrame); err != nil {
			tooLarge = fmt.Errorf("transport: send %v to %s: %w", e.Type, s.peer, err)
			break
		}
		t = e.Type
	}
	s.wbuf = b
	if len(b) == 0 {
		return tooLarge
	}
	if err := s.writeLocked(t, b); err != nil {
		return err
	}
	return tooLarge
}

// writeLocked writes frames b (the last of type t) on the control
// stream; s.wmu is held.
func (s *Session) writeLocked(t wire.MsgType, b []byte) error {
	if s.isClosed() {
		return fmt.Errorf("transport: send %v: %w", t, ErrClosed)
	}
	s.ctrl.SetWriteDeadline(time.Now().Add(s.cfg.ConnectionWriteTimeout))
	if _, err := s.ctrl.Write(b); err != nil {
		err = s.closedErr("send "+t.String()+" to", err)
		s.Close()
		return err
	}
	return nil
}

// Recv reads the next message from the control stream. Only one goroutine
// may call Recv at a time. A frame over MaxFrame or a malformed frame leaves
// the control stream unreadable but the session open, so that the caller
// can still answer with a Refused (see [Refuse]) before closing it; once the
// session is closed Recv returns an error wrapping ErrClosed (and the cause,
// when the peer or the network ended it). After an error every later call
// returns the same error.
func (s *Session) Recv() (wire.Envelope, error) { return s.recvMax(s.cfg.MaxFrame) }

// recvMax is Recv with a frame cap of max bytes.
func (s *Session) recvMax(max int) (wire.Envelope, error) {
	if s.rerr != nil {
		return wire.Envelope{}, s.rerr
	}
	e, err := wire.ReadFrame(s.r, max)
	if err == nil {
		return e, nil
	}
	switch {
	case errors.Is(err, yamux.ErrTimeout):
		// Only recvCtx sets a read deadline; it reports the context error.
		s.rerr = fmt.Errorf("transport: recv from %s: %w", s.peer, err)
		return wire.Envelope{}, s.rerr
	case errors.Is(err, wire.ErrFrameTooLarge), errors.Is(err, wire.ErrMalformed):
		s.rerr = fmt.Errorf("transport: recv from %s: %w", s.peer, err)
		return wire.Envelope{}, s.rerr
	default:
		s.rerr = s.closedErr("recv from", err)
	}
	s.Close()
	return wire.Envelope{}, s.rerr
}

// recvCtx is Recv bounded by ctx. When ctx ends first the control stream is
// left unusable for reading (it may hold part of a frame).
func (s *Session) recvCtx(ctx context.Context) (wire.Envelope, error) {
	return s.recvCtxMax(ctx, s.cfg.MaxFrame)
}

// recvCtxMax is recvCtx with a frame cap of max bytes.
func (s *Session) recvCtxMax(ctx context.Context, max int) (wire.Envelope, error) {
	if err := ctx.Err(); err != nil {
		return wire.Envelope{}, fmt.Errorf("transport: recv from %s: %w", s.peer, err)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		s.ctrl.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	e, err := s.recvMax(max)
	if !stop() {
		<-fired
		s.ctrl.SetReadDeadline(time.Time{})
	}
	if err != nil && errors.Is(err, yamux.ErrTimeout) && ctx.Err() != nil {
		s.rerr = fmt.Errorf("transport: recv from %s: %w", s.peer, ctx.Err())
		return wire.Envelope{}, s.rerr
	}
	return e, err
}

// closedErr describes a failed operation on a session that is closing.
func (s *Session) closedErr(op string, err error) error {
	if s.isClosed() {
		return fmt.Errorf("transport: %s %s: %w", op, s.peer, ErrClosed)
	}
	cause := s.wc.alert()
	if cause == nil {
		cause = s.shutdownCause()
	}
	if cause == nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		cause = err
	}
	if cause == nil || errors.Is(cause, io.EOF) || errors.Is(cause, yamux.ErrSessionShutdown) {
		return fmt.Errorf("transport: %s %s: %w by peer", op, s.peer, ErrClosed)
	}
	return fmt.Errorf("transport: %s %s: %w: %w", op, s.peer, ErrClosed, protocolErr(cause))
}

// shutdownCause returns why yamux shut the session down, or nil if it is up.
// yamux keeps the reason private and returns it only from AcceptStream; a
// dead session's queued streams are useless, so draining them is harmless.
func (s *Session) shutdownCause() error { return muxCause(s.mux, s.cfg.AcceptBacklog) }

func muxCause(mux *yamux.Session, backlog int) error {
	if !mux.IsClosed() {
		return nil
	}
	for range backlog + 1 {
		st, err := mux.AcceptStream()
		if err != nil {
			return err
		}
		st.Close()
	}
	return nil
}

// isClosed reports whether Close has been called.
func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// goroutine runs f in a goroutine that Close waits for, or reports false if
// the session is already closed.
func (s *Session) goroutine(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Close closes the session, its streams and the connection. It is
// idempotent, safe for concurrent use, and returns once every goroutine the
// session started has stopped.
func (s *Session) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.mux.Close()
	})
	s.wg.Wait()
	return nil
}

// Done is closed when the session has closed, for any reason.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// RemoteAddr returns the peer's network address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

// LastRead returns when bytes last arrived from the peer (messages, file
// data or keepalive answers), or the session's start if none have.
func (s *Session) LastRead() time.Time { return time.Unix(0, s.wc.lastRead.Load()) }

// Conn returns the connection under the session, e.g. a *tls.Conn whose
// ConnectionState names the peer. Do not read or write it.
func (s *Session) Conn() net.Conn { return s.conn }

// watchedConn is the connection as yamux sees it. It remembers the first
// read error, and when a write fails it waits briefly for the reader to
// fail too: a peer that rejects us usually sends a TLS alert, then closes,
// and the alert (already in our socket buffer) says why far better than the
// "broken pipe" our next write gets.
type watchedConn struct {
	net.Conn
	once    sync.Once
	readErr error         // set once, before failed is closed
	failed  chan struct{} // closed after the first read error
	// lastRead is when the last bytes arrived, in Unix nanoseconds.
	lastRead atomic.Int64
	// batch is the batchConn under the TLS connection, or nil; with it,
	// the header of a data frame waits in hdr (pending) for its body.
	// Only yamux's send loop writes, one call at a time.
	batch   *batchConn
	hdr     [yamuxHeader]byte
	pending bool
}

func newWatchedConn(c net.Conn) *watchedConn {
	w := &watchedConn{Conn: c, failed: make(chan struct{}), batch: batchUnder(c)}
	w.lastRead.Store(time.Now().UnixNano())
	return w
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 {
		w.lastRead.Store(time.Now().UnixNano())
	}
	if err != nil {
		w.once.Do(func() {
			w.readErr = err
			close(w.failed)
		})
	}
	return n, err
}

func (w *watchedConn) Write(p []byte) (int, error) {
	if w.batch != nil {
		if !w.pending && dataHeader(p) {
			copy(w.hdr[:], p)
			w.pending = true
			return len(p), nil
		}
		return w.check(w.writeFrame(p))
	}
	return w.check(w.Conn.Write(p))
}

// writeFrame writes p, with the data header held back before it if any,
// in as few TLS records and system calls as it can (see [batchConn]).
func (w *watchedConn) writeFrame(p []byte) (n int, err error) {
	w.batch.hold()
	defer func() {
		if rerr := w.batch.release(); err == nil && rerr != nil {
			n, err = 0, rerr
		}
	}()
	if !w.pending {
		return w.Conn.Write(p)
	}
	w.pending = false
	if len(p) <= 16<<10-yamuxHeader {
		buf := batchBufs.Get().(*[]byte)
		*buf = append(append((*buf)[:0], w.hdr[:]...), p...)
		n, err = w.Conn.Write(*buf)
		*buf = (*buf)[:0]
		batchBufs.Put(buf)
		return max(n-yamuxHeader, 0), err
	}
	if _, err := w.Conn.Write(w.hdr[:]); err != nil {
		return 0, err
	}
	return w.Conn.Write(p)
}

// check waits briefly for the read side after a failed write (see
// watchedConn).
func (w *watchedConn) check(n int, err error) (int, error) {
	if err != nil {
		t := time.NewTimer(alertWait)
		defer t.Stop()
		select {
		case <-w.failed:
		case <-t.C:
		}
	}
	return n, err
}

// alertWait bounds how long a failed write waits for the read side.
const alertWait = 200 * time.Millisecond

// alert returns the TLS alert the peer sent, if the read side got one.
func (w *watchedConn) alert() error {
	select {
	case <-w.failed:
	default:
		return nil
	}
	var op *net.OpError
	if errors.As(w.readErr, &op) && op.Op == "remote error" {
		return w.readErr
	}
	return nil
}
