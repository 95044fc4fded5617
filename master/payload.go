package master

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// payload is an uploaded file held in memory, in chunks allocated as its
// bytes arrived: never from the size its header declared, and never grown
// by reallocation (a doubling slice would hold up to twice the bytes the
// budget counts while it copies).
type payload [][]byte

// payloadChunk is the size of the chunks an upload is read into, and the
// most the master allocates for an upload ahead of the bytes it received.
const payloadChunk = 64 << 10

// size is the number of bytes held.
func (p payload) size() int64 {
	var n int64
	for _, c := range p {
		n += int64(len(c))
	}
	return n
}

// reader reads the payload from its start.
func (p payload) reader() io.Reader {
	rs := make([]io.Reader, len(p))
	for i, c := range p {
		rs[i] = bytes.NewReader(c)
	}
	return io.MultiReader(rs...)
}

// bytes returns the payload as one slice (for tests and small files).
func (p payload) bytes() []byte {
	return bytes.Join(p, nil)
}

// flat returns the payload as one slice, without a copy when it is one
// chunk (a payload is never written after it is read, so the slice may be
// shared).
func (p payload) flat() []byte {
	if len(p) == 1 {
		return p[0]
	}
	return p.bytes()
}

// errLonger reports a file stream with more bytes than its header said.
var errLonger = errors.New("file longer than its header says")

// readPayload reads exactly size bytes from r in chunks of at most
// payloadChunk, calling charge with each chunk's size before allocating it
// (an error from charge ends the read), and progress after each chunk
// arrived. It then checks that r ends there: r reports a checksum mismatch
// with its end, which io.ReadFull alone would drop.
func readPayload(r io.Reader, size int64, charge func(n int64) error, progress func()) (payload, error) {
	var p payload
	for left := size; left > 0; {
		n := min(left, payloadChunk)
		if err := charge(n); err != nil {
			return p, err
		}
		c := make([]byte, n)
		p = append(p, c) // counted in the charge even if the read fails
		if _, err := io.ReadFull(r, c); err != nil {
			return p, err
		}
		left -= n
		progress()
	}
	switch n, err := r.Read(make([]byte, 1)); {
	case n != 0:
		return p, errLonger
	case !errors.Is(err, io.EOF):
		return p, fmt.Errorf("after %d bytes: %w", size, err)
	}
	return p, nil
}
