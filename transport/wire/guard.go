package wire

import (
	"encoding/binary"
	"fmt"
)

// MaxDepth is the deepest nesting of msgpack arrays and maps [Validate]
// accepts. Kiln messages nest at most four levels.
const MaxDepth = 32

// Validate walks msgpack bytes once, without allocating, and returns an
// error wrapping [ErrMalformed] unless b holds exactly one well-formed value
// whose every declared length fits in the bytes that follow it: a str, bin or
// ext must have its payload present, an array needs at least one byte per
// element and a map at least two per entry. Nesting deeper than [MaxDepth]
// is rejected, and so is an array or map of more than [MaxItems] entries.
//
// This is the allocation guard. msgpack v5.4.0 and v5.4.1 ignore their own
// slice allocation limit (decode_slice.go tests `flags&disableAllocLimitFlag
// != 1`, which is always true; upstream issue 401): a five-byte array32
// header claiming four billion elements makes the decoder allocate them all,
// whatever the size of the frame. After Validate succeeds, every length the
// decoder sees is bounded by the size of the input, so decoding allocates at
// most a small multiple of it. Every decode of network bytes in Kiln goes
// through Validate first.
func Validate(b []byte) error {
	rest, err := skip(b, 0)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	return nil
}

// skip checks the value at the start of b and returns the bytes after it.
func skip(b []byte, depth int) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: truncated value", ErrMalformed)
	}
	c := b[0]
	b = b[1:]
	switch {
	case c <= 0x7f || c >= 0xe0: // positive and negative fixint
		return b, nil
	case c <= 0x8f: // fixmap
		return skipItems(b, 2*int(c&0x0f), depth)
	case c <= 0x9f: // fixarray
		return skipItems(b, int(c&0x0f), depth)
	case c <= 0xbf: // fixstr
		return skipBytes(b, int(c&0x1f))
	}
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return b, nil
	case 0xc4, 0xd9: // bin8, str8
		return skipSized(b, 1, 0)
	case 0xc5, 0xda: // bin16, str16
		return skipSized(b, 2, 0)
	case 0xc6, 0xdb: // bin32, str32
		return skipSized(b, 4, 0)
	case 0xc7: // ext8: length, type, data
		return skipSized(b, 1, 1)
	case 0xc8: // ext16
		return skipSized(b, 2, 1)
	case 0xc9: // ext32
		return skipSized(b, 4, 1)
	case 0xcc, 0xd0: // uint8, int8
		return skipBytes(b, 1)
	case 0xcd, 0xd1: // uint16, int16
		return skipBytes(b, 2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return skipBytes(b, 4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return skipBytes(b, 8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16 (type byte + data)
		return skipBytes(b, 1+1<<(c-0xd4))
	case 0xdc: // array16
		n, b, err := readCount(b, 2)
		if err != nil {
			return nil, err
		}
		return skipItems(b, n, depth)
	case 0xdd: // array32
		n, b, err := readCount(b, 4)
		if err != nil {
			return nil, err
		}
		return skipItems(b, n, depth)
	case 0xde: // map16
		n, b, err := readCount(b, 2)
		if err != nil {
			return nil, err
		}
		return skipItems(b, 2*n, depth)
	case 0xdf: // map32
		n, b, err := readCount(b, 4)
		if err != nil {
			return nil, err
		}
		return skipItems(b, 2*n, depth)
	}
	return nil, fmt.Errorf("%w: invalid code 0x%02x", ErrMalformed, c)
}

// skipItems skips n consecutive values (array elements or map keys and
// values), each at least one byte, nested one level below depth.
func skipItems(b []byte, n, depth int) ([]byte, error) {
	if n > len(b) {
		return nil, fmt.Errorf("%w: %d items declared, %d bytes left", ErrMalformed, n, len(b))
	}
	if depth+1 > MaxDepth {
		return nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, MaxDepth)
	}
	var err error
	for range n {
		if b, err = skip(b, depth+1); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// skipSized skips a payload whose length is a big-endian integer of width
// bytes, followed by extra bytes (the ext type) before the payload.
func skipSized(b []byte, width, extra int) ([]byte, error) {
	n, b, err := readLen(b, width)
	if err != nil {
		return nil, err
	}
	return skipBytes(b, extra+n)
}

// skipBytes skips n raw bytes.
func skipBytes(b []byte, n int) ([]byte, error) {
	if n > len(b) {
		return nil, fmt.Errorf("%w: %d bytes declared, %d left", ErrMalformed, n, len(b))
	}
	return b[n:], nil
}

// readCount reads the entry count of an array or map and refuses one over
// MaxItems.
func readCount(b []byte, width int) (int, []byte, error) {
	n, b, err := readLen(b, width)
	if err == nil && n > MaxItems {
		err = fmt.Errorf("%w: %d entries in one array or map, at most %d", ErrMalformed, n, MaxItems)
	}
	return n, b, err
}

// readLen reads a big-endian length of width 1, 2 or 4 bytes.
func readLen(b []byte, width int) (int, []byte, error) {
	if len(b) < width {
		return 0, nil, fmt.Errorf("%w: truncated length", ErrMalformed)
	}
	switch width {
	case 1:
		return int(b[0]), b[1:], nil
	case 2:
		return int(binary.BigEndian.Uint16(b)), b[2:], nil
	}
	return int(binary.BigEndian.Uint32(b)), b[4:], nil
}
