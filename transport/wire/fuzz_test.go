package wire

import (
	"bytes"
	"reflect"
	"runtime/metrics"
	"testing"
)

// heapAllocs returns the bytes allocated so far, read without stopping the
// world (unlike runtime.ReadMemStats), so that fuzz targets can afford it.
func heapAllocs() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// checkAllocs fails if f allocates more than a small multiple of n input
// bytes (plus slack for per-P allocation caches).
func checkAllocs(t *testing.T, n int, f func()) {
	t.Helper()
	before := heapAllocs()
	f()
	if used := heapAllocs() - before; used > uint64(64*n+(2<<20)) {
		t.Fatalf("%d bytes allocated for %d bytes of input", used, n)
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, tt := range hugeBodies {
		f.Add(frameOf(tt.t, unhex(f, tt.body)))
	}
	f.Add(unhex(f, "0000002e 93 01 00 c429 84 a5 70726f746f 01 a4 726f6c65 a5 736c617665 a4 6e616d65 a2 7331 a7 76657273696f6e a5 302e312e30"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkAllocs(t, len(data), func() {
			e, err := ReadFrame(bytes.NewReader(data), MaxFrame)
			if err != nil {
				return
			}
			for _, mt := range MsgTypes() {
				v, _ := NewBody(mt)
				e.Type = mt
				Decode(e, v)
			}
		})
	})
}

// FuzzDecodeBody decodes a body of every type, re-encodes it, decodes that
// again and requires the second encoding to equal the first.
func FuzzDecodeBody(f *testing.F) {
	for _, tt := range hugeBodies {
		f.Add(uint8(tt.t), unhex(f, tt.body))
	}
	for _, mt := range MsgTypes() {
		v, _ := NewBody(mt)
		e, _ := Encode(mt, 0, v)
		f.Add(uint8(mt), e.Body)
	}
	for _, v := range []any{ // just over the field limits
		&Hello{Features: make([]string, MaxFeatures+1)},
		&Register{Toolchains: make([]Toolchain, MaxToolchains+1)},
		&AdminRequest{Args: []string{string(make([]byte, MaxText+1))}},
		&Submit{SourceSize: 3, Inline: Inline{Source: []byte("src"), SourceSHA256: make([]byte, 32), Stdin: []byte("in")}},
		&Assign{Inline: Inline{Source: make([]byte, MaxInline/2), Stdin: make([]byte, MaxInline/2+1)}},
		// and a sealed job's key wrapped in its Submit, then its Assign
		&Submit{Sealed: true, WrapNonce: make([]byte, 32), Wraps: []KeyWrap{{Slave: "s1", Key: make([]byte, 81)}, {Slave: "s2", Key: make([]byte, 81)}}},
		&Assign{Sealed: true, WrappedKey: make([]byte, 81), WrapNonce: make([]byte, 32)},
	} {
		e, _ := Encode(typeOf(v), 0, v)
		f.Add(uint8(e.Type), e.Body)
	}
	f.Fuzz(func(t *testing.T, typ uint8, body []byte) {
		mt := MsgType(typ)
		v1, err := NewBody(mt)
		if err != nil {
			return
		}
		checkAllocs(t, len(body), func() { err = Decode(Envelope{Type: mt, Body: body}, v1) })
		if err != nil {
			return
		}
		e1, err := Encode(mt, 0, v1)
		if err != nil {
			t.Fatalf("re-encode %v %+v: %v", mt, v1, err)
		}
		v2, err := DecodeNew(e1)
		if err != nil {
			t.Fatalf("decode re-encoded %v % x: %v", mt, e1.Body, err)
		}
		e2, err := Encode(mt, 0, v2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e1.Body, e2.Body) {
			t.Fatalf("%v does not round-trip:\n% x\n% x", mt, e1.Body, e2.Body)
		}
	})
}

// FuzzFileHeader reads the start of a file stream: a header frame that must
// decode to a valid FileHeader and survive a round trip.
func FuzzFileHeader(f *testing.F) {
	h := NewFileHeader("42", FileSource, "main.c", []byte("int main(){return 0;}"))
	e, _ := Encode(MsgFileHeader, 0, &h)
	good, _ := AppendFrame(nil, e, MaxFrame)
	f.Add(good)
	f.Add(frameOf(MsgFileHeader, unhex(f, "81 a6 736861323536 c6 ffffffff")))
	f.Add(frameOf(MsgFileHeader, unhex(f, "82 a4 73697a65 d3 ffffffffffffffff a6 736861323536 c4 00")))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h FileHeader
		var err error
		checkAllocs(t, len(data), func() {
			var e Envelope
			if e, err = ReadFrame(bytes.NewReader(data), MaxFrame); err != nil {
				return
			}
			if e.Type != MsgFileHeader {
				err = ErrUnknownType
				return
			}
			if err = Decode(e, &h); err == nil {
				err = h.Check()
			}
		})
		if err != nil {
			return
		}
		e, err := Encode(MsgFileHeader, 7, &h)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, e); err != nil {
			t.Fatal(err)
		}
		e2, err := ReadFrame(&buf, MaxFrame)
		if err != nil {
			t.Fatal(err)
		}
		var h2 FileHeader
		if err := Decode(e2, &h2); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(h, h2) || h2.Check() != nil {
			t.Fatalf("round trip: %+v != %+v", h, h2)
		}
	})
}

// typeOf returns the message type whose body v is.
func typeOf(v any) MsgType {
	for _, mt := range MsgTypes() {
		if checkBody(mt, v) == nil {
			return mt
		}
	}
	return 0
}
