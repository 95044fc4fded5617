package wire

import (
	"bytes"
	"encoding/binary"
	"math"
)

// ParseOutput reads an Output body in place when it is byte for byte what
// [Encode] writes for the Output it holds (its keys in order, each value
// in the encoder's form: the shortest for the attempt and each length, a
// uint8 stream, a uint64 seq, data nil or binary, a key only when not
// empty) and every field is within its limit: o's Data and Key then alias
// body, and body is what Encode would write for o, so that a relay can
// pass it on unchanged instead of encoding o again. Any other body, valid
// or not, gives ok false: decode it with [Decode], which checks it.
// FuzzParseOutput checks that an accepted body decodes to o and encodes
// back to itself.
func ParseOutput(body []byte) (o Output, ok bool) {
	b := body
	if len(b) == 0 || (b[0] != 0x85 && b[0] != 0x86) {
		return Output{}, false
	}
	keyed := b[0] == 0x86
	b = b[1:]
	var job []byte
	if b, ok = fixKey(b, "job"); !ok {
		return Output{}, false
	}
	if job, b, ok = canonicalStr(b); !ok || len(job) > MaxShort {
		return Output{}, false
	}
	if b, ok = fixKey(b, "attempt"); !ok {
		return Output{}, false
	}
	var attempt int64
	if attempt, b, ok = canonicalInt(b); !ok || attempt != int64(int(attempt)) {
		return Output{}, false
	}
	if b, ok = fixKey(b, "stream"); !ok || len(b) < 2 || b[0] != 0xcc {
		return Output{}, false
	}
	o.Stream, b = b[1], b[2:]
	if b, ok = fixKey(b, "seq"); !ok || len(b) < 9 || b[0] != 0xcf {
		return Output{}, false
	}
	o.Seq, b = binary.BigEndian.Uint64(b[1:9]), b[9:]
	if b, ok = fixKey(b, "data"); !ok {
		return Output{}, false
	}
	if len(b) > 0 && b[0] == 0xc0 { // nil
		b = b[1:]
	} else if o.Data, b, ok = canonicalBin(b); !ok {
		return Output{}, false
	}
	if keyed {
		if b, ok = fixKey(b, "key"); !ok {
			return Output{}, false
		}
		if o.Key, b, ok = canonicalBin(b); !ok || len(o.Key) == 0 || len(o.Key) > MaxKey {
			return Output{}, false
		}
	}
	if len(b) != 0 {
		return Output{}, false
	}
	o.JobID, o.Attempt = string(job), int(attempt)
	return o, true
}

// fixKey consumes the map key k, a fixstr as the encoder writes it.
func fixKey(b []byte, k string) ([]byte, bool) {
	if len(b) < 1+len(k) || b[0] != 0xa0|byte(len(k)) || string(b[1:1+len(k)]) != k {
		return b, false
	}
	return b[1+len(k):], true
}

// canonicalStr consumes a string in the encoder's form: a fixstr below 32
// bytes, str8 below 256, str16 below 65536 (longer ones are not read).
func canonicalStr(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, b, false
	}
	var n, h int
	switch c := b[0]; {
	case c&0xe0 == 0xa0:
		n, h = int(c&0x1f), 1
	case c == 0xd9 && len(b) >= 2:
		n, h = int(b[1]), 2
		if n < 32 {
			return nil, b, false
		}
	case c == 0xda && len(b) >= 3:
		n, h = int(binary.BigEndian.Uint16(b[1:3])), 3
		if n <= math.MaxUint8 {
			return nil, b, false
		}
	default:
		return nil, b, false
	}
	if len(b)-h < n {
		return nil, b, false
	}
	return b[h : h+n], b[h+n:], true
}

// canonicalBin consumes a binary in the encoder's form: the shortest of
// bin8, bin16 and bin32 that holds its length.
func canonicalBin(b []byte) (v, rest []byte, ok bool) {
	if len(b) == 0 {
		return nil, b, false
	}
	var n, h int
	switch c := b[0]; {
	case c == 0xc4 && len(b) >= 2:
		n, h = int(b[1]), 2
	case c == 0xc5 && len(b) >= 3:
		n, h = int(binary.BigEndian.Uint16(b[1:3])), 3
		if n <= math.MaxUint8 {
			return nil, b, false
		}
	case c == 0xc6 && len(b) >= 5:
		u := binary.BigEndian.Uint32(b[1:5])
		if u <= math.MaxUint16 || uint64(u) > uint64(len(b)) {
			return nil, b, false
		}
		n, h = int(u), 5
	default:
		return nil, b, false
	}
	if len(b)-h < n {
		return nil, b, false
	}
	return b[h : h+n : h+n], b[h+n:], true
}

// canonicalInt consumes an integer in the form the encoder writes a Go
// int: the shortest one, unsigned codes for the positive values.
func canonicalInt(b []byte) (v int64, rest []byte, ok bool) {
	if len(b) == 0 {
		return 0, b, false
	}
	c := b[0]
	var n int
	switch {
	case c <= 0x7f:
		v, n = int64(c), 1
	case c >= 0xe0:
		v, n = int64(int8(c)), 1
	case c == 0xcc && len(b) >= 2:
		v, n = int64(b[1]), 2
	case c == 0xcd && len(b) >= 3:
		v, n = int64(binary.BigEndian.Uint16(b[1:])), 3
	case c == 0xce && len(b) >= 5:
		v, n = int64(binary.BigEndian.Uint32(b[1:])), 5
	case c == 0xcf && len(b) >= 9:
		u := binary.BigEndian.Uint64(b[1:])
		if u > math.MaxInt64 {
			return 0, b, false
		}
		v, n = int64(u), 9
	case c == 0xd0 && len(b) >= 2:
		v, n = int64(int8(b[1])), 2
	case c == 0xd1 && len(b) >= 3:
		v, n = int64(int16(binary.BigEndian.Uint16(b[1:]))), 3
	case c == 0xd2 && len(b) >= 5:
		v, n = int64(int32(binary.BigEndian.Uint32(b[1:]))), 5
	case c == 0xd3 && len(b) >= 9:
		v, n = int64(binary.BigEndian.Uint64(b[1:])), 9
	default:
		return 0, b, false
	}
	var canon [9]byte
	if !bytes.Equal(b[:n], appendInt(canon[:0], v)) {
		return 0, b, false // a longer form than the encoder's
	}
	return v, b[n:], true
}

// appendInt appends v as the msgpack encoder writes an int: the shortest
// form, unsigned codes for values >= 0.
func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0 && v <= math.MaxInt8:
		return append(b, byte(v))
	case v >= 0 && v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v >= 0 && v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v >= 0 && v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	case v >= 0:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), uint64(v))
	case v >= -32:
		return append(b, byte(int8(v)))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(int8(v)))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(int16(v)))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(int32(v)))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}
