package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/hashicorp/yamux"

	"kiln/transport/wire"
)

// copyBuf is the buffer size for file streams: large writes become large
// yamux data frames, which keeps the per-frame overhead small.
const copyBuf = 256 << 10

// HashFile reads r to its end and returns its length and SHA-256, the Size
// and SHA256 of a [wire.FileHeader]. Seek r back before sending it.
func HashFile(r io.Reader) (size int64, sum []byte, err error) {
	h := sha256.New()
	size, err = io.CopyBuffer(h, r, make([]byte, 64<<10))
	if err != nil {
		return 0, nil, fmt.Errorf("transport: hash file: %w", err)
	}
	return size, h.Sum(nil), nil
}

// SendFile opens a file stream, writes hdr and exactly hdr.Size bytes read
// from r, then closes the stream. hdr must carry the SHA-256 of those bytes
// (see [HashFile] and [wire.NewFileHeader]). r must end right after Size
// bytes: a shorter or longer r is an error wrapping ErrFileSize, and the
// receiver then sees a short stream. SendFile is safe for concurrent use;
// each call has its own stream, so big files never block the control stream.
// ctx bounds the whole transfer.
func (s *Session) SendFile(ctx context.Context, hdr wire.FileHeader, r io.Reader) error {
	if err := s.sendFile(ctx, hdr, r); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("transport: send file %q to %s: %w", hdr.Name, s.peer, err)
	}
	return nil
}

func (s *Session) sendFile(ctx context.Context, hdr wire.FileHeader, r io.Reader) error {
	if err := hdr.Check(); err != nil {
		return err
	}
	e, err := wire.Encode(wire.MsgFileHeader, 0, &hdr)
	if err != nil {
		return err
	}
	frame, err := wire.AppendFrame(nil, e, s.cfg.MaxFrame)
	if err != nil {
		return err
	}
	st, err := s.openStream(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := st.Write(frame); err != nil {
		return s.streamErr(err)
	}
	return s.copyExact(st, r, hdr.Size)
}

// copyExact copies exactly size bytes from r to w and checks that r ends
// there. It holds back the last byte until it has seen r end, so that a
// longer r never delivers a complete file to the receiver.
func (s *Session) copyExact(w io.Writer, r io.Reader, size int64) error {
	head := max(size-1, 0)
	n, err := io.CopyBuffer(w, io.LimitReader(r, head), make([]byte, min(max(head, 1), copyBuf)))
	if err != nil {
		return s.streamErr(err)
	}
	if n < head {
		return fmt.Errorf("%w: reader gave %d of %d bytes", ErrFileSize, n, size)
	}
	var tail [2]byte
	want := int(size - head) // 1, or 0 for an empty file
	got, err := io.ReadFull(r, tail[:want+1])
	switch {
	case got > want:
		return fmt.Errorf("%w: reader is longer than %d bytes", ErrFileSize, size)
	case got < want:
		return fmt.Errorf("%w: reader gave %d of %d bytes", ErrFileSize, head+int64(got), size)
	case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF):
		return err
	}
	if _, err := w.Write(tail[:want]); err != nil {
		return s.streamErr(err)
	}
	return nil
}

// streamErr words an error from a file stream write.
func (s *Session) streamErr(err error) error {
	if errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, yamux.ErrStreamClosed) || errors.Is(err, yamux.ErrConnectionReset) {
		return s.closedErr("file stream to", err)
	}
	return err
}

// openStream opens a yamux stream, bounded by ctx. yamux blocks the open
// when AcceptBacklog streams wait unacknowledged; the open then finishes in
// a goroutine that Close waits for, which closes the stream if ctx ended.
func (s *Session) openStream(ctx context.Context) (*yamux.Stream, error) {
	type result struct {
		st  *yamux.Stream
		err error
	}
	ch := make(chan result)
	started := s.goroutine(func() {
		st, err := s.mux.OpenStream()
		select {
		case ch <- result{st, err}:
		case <-ctx.Done():
			if st != nil {
				st.Close()
			}
		}
	})
	if !started {
		return nil, ErrClosed
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, s.closedErr("open file stream to", r.err)
		}
		return r.st, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// AcceptFile waits, bounded by ctx, for the peer's next file stream and
// reads its header. The returned ReadCloser yields exactly hdr.Size bytes,
// then io.EOF; if the stream ends early it returns an error wrapping
// ErrShortFile, and if the bytes do not match hdr.SHA256 it returns an error
// wrapping ErrChecksum instead of io.EOF. The caller must Close it; Close
// unblocks a pending Read.
//
// Only one goroutine may call AcceptFile at a time; keep one accept loop
// running, since senders block once AcceptBacklog streams wait. An error
// wrapping ErrClosed or the ctx error ends the loop; any other error
// concerns one bad stream, which has been closed, and the loop may go on.
func (s *Session) AcceptFile(ctx context.Context) (wire.FileHeader, io.ReadCloser, error) {
	st, err := s.mux.AcceptStreamWithContext(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return wire.FileHeader{}, nil, fmt.Errorf("transport: accept file from %s: %w", s.peer, ctx.Err())
		}
		return wire.FileHeader{}, nil, s.closedErr("accept file from", err)
	}
	hdr, err := s.readFileHeader(ctx, st)
	if err != nil {
		st.Close()
		return wire.FileHeader{}, nil, fmt.Errorf("transport: file stream from %s: %w", s.peer, err)
	}
	fr := &fileReader{st: st, left: hdr.Size, size: hdr.Size, want: hdr.SHA256}
	if len(hdr.SHA256) > 0 {
		fr.h = sha256.New()
	}
	return hdr, fr, nil
}

// readFileHeader reads the header frame of a file stream, bounded by ctx and
// by ConnectionWriteTimeout: the sender writes it right after opening.
func (s *Session) readFileHeader(ctx context.Context, st *yamux.Stream) (wire.FileHeader, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectionWriteTimeout)
	defer cancel()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		st.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	e, err := wire.ReadFrame(st, s.cfg.MaxFrame)
	if !stop() {
		<-fired
		st.SetReadDeadline(time.Time{})
	}
	var hdr wire.FileHeader
	switch {
	case err != nil && ctx.Err() != nil:
		return hdr, fmt.Errorf("no header: %w", ctx.Err())
	case err != nil:
		return hdr, err
	case e.Type != wire.MsgFileHeader:
		return hdr, fmt.Errorf("%w: %v opens a file stream", ErrUnexpected, e.Type)
	}
	if err := wire.Decode(e, &hdr); err != nil {
		return hdr, err
	}
	return hdr, hdr.Check()
}

// fileReader yields the bytes of one file stream and checks their length
// and, when the header carries one, their SHA-256 (only sealed payloads,
// which authenticate every chunk themselves, may omit it).
type fileReader struct {
	st   *yamux.Stream
	left int64
	size int64
	want []byte
	h    hash.Hash
	err  error
}

func (f *fileReader) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n := 0
	var err error
	if len(p) > 0 {
		n, err = f.st.Read(p)
		if f.h != nil {
			f.h.Write(p[:n])
		}
		f.left -= int64(n)
	}
	switch {
	case f.left == 0 && f.h != nil && !bytes.Equal(f.h.Sum(nil), f.want):
		f.err = fmt.Errorf("transport: %w (%d bytes)", ErrChecksum, f.size)
	case f.left == 0:
		f.err = io.EOF
	case errors.Is(err, io.EOF):
		f.err = fmt.Errorf("transport: %w: got %d of %d bytes", ErrShortFile, f.size-f.left, f.size)
	case err != nil:
		f.err = fmt.Errorf("transport: read file stream: %w", err)
	}
	return n, f.err
}

// DiscardFile ends a file stream from AcceptFile whose remaining bytes are
// not wanted (read to its end, refused, or never read): it closes this
// side, then reads and drops whatever the peer still sends until the peer
// closes its side, the stream is reset, or timeout passes. Until then the
// bytes a peer sends on a stream closed with Close alone stay buffered in
// yamux, up to twice the stream window, for StreamCloseTimeout; a receiver
// that counts its open streams must wait for DiscardFile to return before
// it takes another. rc must come from AcceptFile; DiscardFile closes it.
func DiscardFile(rc io.ReadCloser, timeout time.Duration) {
	f, ok := rc.(*fileReader)
	if !ok {
		rc.Close()
		return
	}
	f.st.Close() // our FIN; reads go on
	f.st.SetReadDeadline(time.Now().Add(timeout))
	io.Copy(io.Discard, f.st)
	f.st.SetReadDeadline(time.Unix(1, 0))
}

// Close closes the stream and unblocks a pending Read.
func (f *fileReader) Close() error {
	f.st.SetReadDeadline(time.Unix(1, 0))
	return f.st.Close()
}
