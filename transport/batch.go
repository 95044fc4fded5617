package transport

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"
)

// Write batching. yamux writes every frame as two calls, its 12-byte header
// then its body, and crypto/tls turns every call into at least one record
// and every record into one write system call. A control message thus cost
// two records and two system calls on each side, and a large file frame
// one system call per 16 KiB record. Two layers remove that:
//
//   - [watchedConn] (above TLS, what yamux writes to) holds back the header
//     of a data frame with a body until the body comes: a small frame is
//     then sealed as one record, a large one as the records of its body
//     with the header in front;
//   - [batchConn] (below TLS, see [WrapTCP]) collects the records of one
//     such frame and writes them in as few system calls as it can, at most
//     batchFlush bytes each.
//
// Bytes are only held while one watchedConn.Write is in progress: when it
// returns, everything it was given is on the socket, so yamux's write
// timeout, keepalive and Close behave as before, and a write blocked on a
// peer that does not read still blocks where it did.

// batchFlush is the most a batchConn buffers before it writes: four full
// TLS records per system call.
const batchFlush = 64 << 10

// batchBufs recycles batchConn buffers, so that an idle session holds none.
var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, batchFlush+maxRecord); return &b }}

// maxRecord bounds one TLS record on the wire (16 KiB of payload, the
// header, the content type and the AEAD tag).
const maxRecord = 16<<10 + 256

// WrapTCP wraps raw, a connection about to carry TLS for a [Session]
// (tls.Server(WrapTCP(raw), cfg)), so that the session writes each frame in
// as few system calls as it can. [Dial] does it itself. Used any other way
// the returned connection behaves as raw.
func WrapTCP(raw net.Conn) net.Conn { return &batchConn{Conn: raw} }

// batchConn is a connection under TLS that buffers writes between hold and
// release. Its methods are safe for concurrent use; hold and release have
// one caller at a time (the session's writer).
type batchConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	buf  *[]byte // from batchBufs while held
	err  error   // sticky write error met while held
}

// Write writes p at once, or appends it to the buffer while held.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.held {
		return b.Conn.Write(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(*b.buf)+len(p) > batchFlush && len(*b.buf) > 0 {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
	}
	if len(p) > batchFlush {
		return b.Conn.Write(p)
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// flushLocked writes the buffer; b.mu is held.
func (b *batchConn) flushLocked() error {
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	if err != nil {
		b.err = err
	}
	return err
}

// hold starts buffering writes.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.held = true
	b.buf = batchBufs.Get().(*[]byte)
	*b.buf = (*b.buf)[:0]
	b.mu.Unlock()
}

// release writes what was buffered and stops buffering. It returns the
// first write error met since hold.
func (b *batchConn) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(*b.buf) > 0 && b.err == nil {
		b.flushLocked()
	}
	err := b.err
	b.held, b.err = false, nil
	*b.buf = (*b.buf)[:0]
	batchBufs.Put(b.buf)
	b.buf = nil
	return err
}

// batchUnder returns the batchConn under c when c is a TLS connection made
// over [WrapTCP], or nil.
func batchUnder(c net.Conn) *batchConn {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil
	}
	b, _ := tc.NetConn().(*batchConn)
	return b
}

// yamux frame header: version, type, flags (2), stream id (4), length (4).
const (
	yamuxHeader   = 12
	yamuxTypeData = 0
)

// dataHeader reports whether p is exactly the header of a yamux data frame
// whose body of at least one byte yamux writes next.
func dataHeader(p []byte) bool {
	return len(p) == yamuxHeader && p[0] == 0 && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:]) > 0
}
