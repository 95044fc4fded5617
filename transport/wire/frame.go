package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// MaxFrame is the largest frame, length prefix excluded, that a Kiln peer
// sends or accepts.
const MaxFrame = 1 << 20

// Frame layout: a 4-byte big-endian length n, then n bytes holding the
// msgpack array [type uint, id uint, body bin], the integers in their
// shortest form. For example Cancel{JobID: "7"} with id 0 is
//
//	00 00 00 0c               length 12
//	93                        array of 3
//	0d                        type 13 (MsgCancel)
//	00                        id 0
//	c4 07                     bin, 7 bytes:
//	81 a3 6a 6f 62 a1 37      the body, map {"job": "7"}
const lenSize = 4

// AppendFrame appends the frame of e to dst: the length prefix, then the
// envelope. It fails with an error wrapping ErrFrameTooLarge if the frame,
// prefix excluded, would exceed max bytes.
func AppendFrame(dst []byte, e Envelope, max int) ([]byte, error) {
	size := 1 + uintSize(uint64(e.Type)) + uintSize(e.ID) + binHeaderSize(len(e.Body)) + len(e.Body)
	if size > max || size > math.MaxUint32 {
		return dst, fmt.Errorf("%w: %v is %d bytes (max %d)", ErrFrameTooLarge, e.Type, size, max)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(size))
	dst = append(dst, 0x93)
	dst = appendUint(dst, uint64(e.Type))
	dst = appendUint(dst, e.ID)
	dst = appendBinHeader(dst, len(e.Body))
	return append(dst, e.Body...), nil
}

// WriteFrame writes the frame of e to w in a single Write. A frame over
// [MaxFrame] is not written: the error wraps ErrFrameTooLarge.
func WriteFrame(w io.Writer, e Envelope) error {
	b, err := AppendFrame(nil, e, MaxFrame)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// ReadFrame reads one frame from r. A length over max is rejected with an
// error wrapping ErrFrameTooLarge before anything is allocated or read past
// the prefix; below it, the buffer grows as the bytes arrive. Bytes that are not a well-formed envelope, or whose body is
// not one well-formed msgpack value, give an error wrapping ErrMalformed. A
// clean end of input before the frame gives io.EOF; an end inside the frame
// gives io.ErrUnexpectedEOF. Other read errors are returned as they are. The
// type is not checked against the known types: [Decode] does that.
func ReadFrame(r io.Reader, max int) (Envelope, error) {
	var hdr [lenSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Envelope{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return Envelope{}, fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, n, max)
	}
	buf, err := readN(r, int(n))
	if err != nil {
		return Envelope{}, err
	}
	return ParseEnvelope(buf)
}

// readChunk is the most readN allocates before the bytes arrive.
const readChunk = 64 << 10

// readN reads exactly n bytes. It grows its buffer as the bytes arrive,
// doubling from 64 KiB, so a peer that announces a large frame and sends
// little makes this side allocate in proportion to what it sent.
func readN(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), n-len(buf)))...)[:len(buf)]
		}
		m, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	return buf, nil
}

// ParseEnvelope decodes a frame without its length prefix. The returned
// Body aliases b.
func ParseEnvelope(b []byte) (Envelope, error) {
	if err := Validate(b); err != nil {
		return Envelope{}, fmt.Errorf("wire: envelope: %w", err)
	}
	if len(b) == 0 || b[0] != 0x93 {
		return Envelope{}, fmt.Errorf("%w: envelope is not a 3-element array", ErrMalformed)
	}
	t, rest, err := parseUint(b[1:])
	if err != nil {
		return Envelope{}, err
	}
	if t > math.MaxUint8 {
		return Envelope{}, fmt.Errorf("%w: message type %d out of range", ErrMalformed, t)
	}
	id, rest, err := parseUint(rest)
	if err != nil {
		return Envelope{}, err
	}
	body, err := parseBin(rest)
	if err != nil {
		return Envelope{}, err
	}
	if err := Validate(body); err != nil {
		return Envelope{}, fmt.Errorf("wire: %v body: %w", MsgType(t), err)
	}
	return Envelope{Type: MsgType(t), ID: id, Body: body}, nil
}

// parseUint reads a non-negative msgpack integer in any width. The input has
// passed Validate, so the declared widths are present.
func parseUint(b []byte) (uint64, []byte, error) {
	c := b[0]
	switch {
	case c <= 0x7f:
		return uint64(c), b[1:], nil
	case c == 0xcc || c == 0xd0:
		return signed(uint64(b[1]), c == 0xd0 && b[1]&0x80 != 0, b[2:])
	case c == 0xcd || c == 0xd1:
		v := binary.BigEndian.Uint16(b[1:])
		return signed(uint64(v), c == 0xd1 && v&0x8000 != 0, b[3:])
	case c == 0xce || c == 0xd2:
		v := binary.BigEndian.Uint32(b[1:])
		return signed(uint64(v), c == 0xd2 && v&0x80000000 != 0, b[5:])
	case c == 0xcf || c == 0xd3:
		v := binary.BigEndian.Uint64(b[1:])
		return signed(v, c == 0xd3 && v&(1<<63) != 0, b[9:])
	}
	return 0, nil, fmt.Errorf("%w: envelope field 0x%02x is not an unsigned integer", ErrMalformed, c)
}

func signed(v uint64, negative bool, rest []byte) (uint64, []byte, error) {
	if negative {
		return 0, nil, fmt.Errorf("%w: negative envelope field", ErrMalformed)
	}
	return v, rest, nil
}

// parseBin reads a msgpack bin, the last element of the envelope.
func parseBin(b []byte) ([]byte, error) {
	var n, w int
	switch b[0] {
	case 0xc4:
		n, w = int(b[1]), 2
	case 0xc5:
		n, w = int(binary.BigEndian.Uint16(b[1:])), 3
	case 0xc6:
		n, w = int(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return nil, fmt.Errorf("%w: envelope body 0x%02x is not bin", ErrMalformed, b[0])
	}
	return b[w : w+n], nil
}

// uintSize is the size of the compact msgpack encoding of v.
func uintSize(v uint64) int {
	switch {
	case v <= 0x7f:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	}
	return 9
}

// appendUint appends the compact msgpack encoding of v.
func appendUint(dst []byte, v uint64) []byte {
	switch uintSize(v) {
	case 1:
		return append(dst, byte(v))
	case 2:
		return append(dst, 0xcc, byte(v))
	case 3:
		return binary.BigEndian.AppendUint16(append(dst, 0xcd), uint16(v))
	case 5:
		return binary.BigEndian.AppendUint32(append(dst, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xcf), v)
}

func binHeaderSize(n int) int {
	switch {
	case n <= math.MaxUint8:
		return 2
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

func appendBinHeader(dst []byte, n int) []byte {
	switch binHeaderSize(n) {
	case 2:
		return append(dst, 0xc4, byte(n))
	case 3:
		return binary.BigEndian.AppendUint16(append(dst, 0xc5), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xc6), uint32(n))
}
