package seal

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
)

// fullChunk is the ciphertext size of every stream chunk but the last.
const fullChunk = ChunkSize + Overhead

var errClosed = errors.New("seal: write to a closed Writer")

// SealedSize returns the size of the stream that Seal or a Writer produces
// for n bytes of plaintext.
func SealedSize(n int64) int64 {
	return HeaderSize + n + Overhead*int64(chunkCount(n))
}

// chunkCount returns the number of chunks of an n-byte plaintext.
func chunkCount(n int64) int64 {
	return max(1, (n+ChunkSize-1)/ChunkSize)
}

// Seal encrypts plaintext as one stream under the content key and label.
// The result opens with Open or NewReader given the same key and label.
func Seal(key []byte, label string, plaintext []byte) ([]byte, error) {
	if err := checkParams(key, label); err != nil {
		return nil, err
	}
	return sealStream(key, label, randomSalt(), plaintext), nil
}

// sealStream is Seal with a given salt.
func sealStream(key []byte, label string, salt, p []byte) []byte {
	hdr, aead := newHeader(key, label, kindStream, salt)
	n := int(chunkCount(int64(len(p))))
	out := make([]byte, 0, int(SealedSize(int64(len(p)))))
	out = append(out, hdr...)
	var nonce [nonceSize]byte
	for i := range n {
		setNonce(&nonce, uint64(i), i == n-1)
		out = aead.Seal(out, nonce[:], p[i*ChunkSize:min(len(p), (i+1)*ChunkSize)], nil)
	}
	return out
}

// Open decrypts and authenticates a stream made by Seal or a Writer. It
// returns all of the plaintext, or nil and an error matching ErrWrongKey,
// ErrTruncated or ErrTampered.
func Open(key []byte, label string, ciphertext []byte) ([]byte, error) {
	if err := checkParams(key, label); err != nil {
		return nil, err
	}
	if len(ciphertext) < HeaderSize {
		return nil, fmt.Errorf("%w: stream of %d bytes is shorter than its header", ErrTruncated, len(ciphertext))
	}
	aead, err := parseHeader(key, label, kindStream, ciphertext[:HeaderSize])
	if err != nil {
		return nil, err
	}
	body := ciphertext[HeaderSize:]
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: stream has a header but no chunk", ErrTruncated)
	}
	n := (len(body) + fullChunk - 1) / fullChunk
	out := make([]byte, 0, len(body))
	for i := range n {
		chunk := body[i*fullChunk : min(len(body), (i+1)*fullChunk)]
		if out, err = openChunk(aead, out, chunk, uint64(i), i == n-1); err != nil {
			clear(out[:cap(out)])
			return nil, err
		}
	}
	return out, nil
}

// openChunk authenticates stream chunk i, whose position (last or not) is
// known, and appends its plaintext to dst. On failure it tells truncation
// and trailing data from other tampering by trying the other position.
func openChunk(aead cipher.AEAD, dst, chunk []byte, i uint64, last bool) ([]byte, error) {
	if len(chunk) < Overhead {
		return dst, fmt.Errorf("%w: chunk %d is %d bytes, shorter than a tag", ErrTruncated, i, len(chunk))
	}
	if last && i > 0 && len(chunk) == Overhead {
		return dst, fmt.Errorf("%w: empty final chunk %d", ErrTampered, i)
	}
	var nonce [nonceSize]byte
	setNonce(&nonce, i, last)
	out, err := aead.Open(dst, nonce[:], chunk, nil)
	if err == nil {
		return out, nil
	}
	setNonce(&nonce, i, !last)
	if _, err := aead.Open(dst, nonce[:], chunk, nil); err == nil {
		if last {
			return dst, fmt.Errorf("%w: stream ends after chunk %d, which is not the last", ErrTruncated, i)
		}
		return dst, fmt.Errorf("%w: data after the last chunk %d", ErrTampered, i)
	}
	return dst, fmt.Errorf("%w: chunk %d does not authenticate", ErrTampered, i)
}

// Writer seals a stream chunk by chunk as it is written. It buffers at most
// one chunk; Close seals and writes the last one. A Writer is not safe for
// concurrent use.
type Writer struct {
	w      io.Writer
	aead   cipher.AEAD
	hdr    []byte // header not yet written; nil once written
	buf    []byte // pending plaintext, at most ChunkSize bytes
	out    []byte // ciphertext scratch
	i      uint64 // index of the next chunk
	err    error  // sticky write error
	closed bool
}

// NewWriter returns a Writer that seals what is written to it under the
// content key and label and writes the stream to w. Nothing is written to
// w before the first chunk is complete or Close is called. Close does not
// close w.
func NewWriter(key []byte, label string, w io.Writer) (*Writer, error) {
	if err := checkParams(key, label); err != nil {
		return nil, err
	}
	hdr, aead := newHeader(key, label, kindStream, randomSalt())
	return &Writer{
		w:    w,
		aead: aead,
		hdr:  hdr,
		buf:  make([]byte, 0, ChunkSize),
		out:  make([]byte, 0, HeaderSize+fullChunk),
	}, nil
}

// Write buffers p and writes every chunk it completes, except the last
// complete one, which waits until more data or Close tells whether it is
// the final chunk.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errClosed
	}
	n := 0
	for len(p) > 0 && w.err == nil {
		if len(w.buf) == ChunkSize {
			w.flush(false)
			continue
		}
		k := copy(w.buf[len(w.buf):ChunkSize], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		n += k
	}
	return n, w.err
}

// Close seals and writes the final chunk. Later calls return the result of
// the first one.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	w.closed = true
	if w.err == nil {
		w.flush(true)
	}
	return w.err
}

// flush seals the buffered plaintext as the next chunk and writes it.
func (w *Writer) flush(last bool) {
	var nonce [nonceSize]byte
	setNonce(&nonce, w.i, last)
	w.out = append(w.out[:0], w.hdr...)
	w.hdr = nil
	w.out = w.aead.Seal(w.out, nonce[:], w.buf, nil)
	if _, err := w.w.Write(w.out); err != nil {
		w.err = fmt.Errorf("seal: write chunk %d: %w", w.i, err)
	}
	w.i++
	w.buf = w.buf[:0]
}

// Reader opens a stream chunk by chunk. It returns the plaintext of a chunk
// only after the chunk authenticated, and io.EOF only after the last chunk
// authenticated and its source reached EOF with nothing after it. A Reader
// is not safe for concurrent use.
type Reader struct {
	src     io.Reader
	key     []byte // until the header is read
	label   string
	aead    cipher.AEAD
	buf     []byte // ciphertext of one chunk
	plain   []byte // plaintext of one chunk
	pending []byte // plaintext not yet returned
	i       uint64 // index of the next chunk
	done    bool   // the last chunk authenticated
	err     error  // sticky; io.EOF once done and drained
}

// NewReader returns a Reader that opens the stream read from r under the
// content key and label. Nothing is read before the first Read. The Reader
// reads r to EOF to make sure nothing follows the last chunk, so a source
// that stays open after the stream (a network stream) should be bounded,
// for example with io.LimitReader and the size from its file header.
func NewReader(key []byte, label string, r io.Reader) (*Reader, error) {
	if err := checkParams(key, label); err != nil {
		return nil, err
	}
	return &Reader{src: r, key: append([]byte(nil), key...), label: label}, nil
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			r.err = io.EOF
			continue
		}
		r.err = r.next()
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// next reads, authenticates and decrypts one chunk into r.pending.
func (r *Reader) next() error {
	if r.aead == nil {
		if err := r.readHeader(); err != nil {
			return err
		}
	}
	n, err := io.ReadFull(r.src, r.buf)
	last := true
	switch {
	case err == io.EOF:
		return fmt.Errorf("%w: stream ends after %d chunks without its last chunk", ErrTruncated, r.i)
	case err == io.ErrUnexpectedEOF:
		r.pending, err = openChunk(r.aead, r.plain[:0], r.buf[:n], r.i, true)
	case err != nil:
		return fmt.Errorf("seal: read chunk %d: %w", r.i, err)
	default:
		r.pending, last, err = r.openFull()
	}
	if err != nil {
		r.pending = nil
		return err
	}
	if last {
		return r.end()
	}
	r.i++
	return nil
}

// openFull opens a full-size chunk, which may or may not be the last.
func (r *Reader) openFull() (p []byte, last bool, err error) {
	var nonce [nonceSize]byte
	setNonce(&nonce, r.i, false)
	if p, err := r.aead.Open(r.plain[:0], nonce[:], r.buf, nil); err == nil {
		return p, false, nil
	}
	setNonce(&nonce, r.i, true)
	if p, err := r.aead.Open(r.plain[:0], nonce[:], r.buf, nil); err == nil {
		return p, true, nil
	}
	return nil, false, fmt.Errorf("%w: chunk %d does not authenticate", ErrTampered, r.i)
}

// end checks that nothing follows the last chunk, then marks the stream
// done. On failure it withholds the last chunk's plaintext.
func (r *Reader) end() error {
	var one [1]byte
	if _, err := io.ReadFull(r.src, one[:]); err == nil {
		r.pending = nil
		return fmt.Errorf("%w: data after the last chunk %d", ErrTampered, r.i)
	} else if err != io.EOF {
		r.pending = nil
		return fmt.Errorf("seal: read after the last chunk: %w", err)
	}
	r.i++
	r.done = true
	return nil
}

// readHeader reads and checks the stream header.
func (r *Reader) readHeader() error {
	hdr := make([]byte, HeaderSize)
	if n, err := io.ReadFull(r.src, hdr); err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: stream of %d bytes is shorter than its header", ErrTruncated, n)
	} else if err != nil {
		return fmt.Errorf("seal: read header: %w", err)
	}
	aead, err := parseHeader(r.key, r.label, kindStream, hdr)
	if err != nil {
		return err
	}
	r.aead, r.key = aead, nil
	r.buf = make([]byte, fullChunk)
	r.plain = make([]byte, 0, ChunkSize)
	return nil
}
