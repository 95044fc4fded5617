package wire

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// checkParsedOutput fails unless ParseOutput's verdict on body holds: an
// accepted body decodes (Decode, with its checks) to the same Output and
// encodes back to itself, byte for byte.
func checkParsedOutput(t *testing.T, body []byte) bool {
	t.Helper()
	o, ok := ParseOutput(body)
	if !ok {
		return false
	}
	var d Output
	if err := Decode(Envelope{Type: MsgOutput, Body: body}, &d); err != nil {
		t.Fatalf("ParseOutput accepted % x, which Decode refuses: %v", body, err)
	}
	if !reflect.DeepEqual(o, d) {
		t.Fatalf("ParseOutput read %#v from % x, Decode %#v", o, body, d)
	}
	e, err := Encode(MsgOutput, 0, d)
	if err != nil || !bytes.Equal(e.Body, body) {
		t.Fatalf("ParseOutput accepted % x, which encodes again as % x (%v)", body, e.Body, err)
	}
	return true
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestParseOutputTakesWhatEncodeWrites: every Output Encode writes, over
// the edges of each field's forms (lengths 0, 31/32, 255/256, 65535/65536
// and more; attempts around every integer form, negative ones too), is
// read in place by ParseOutput to the same fields; one over a field limit
// is not.
func TestParseOutputTakesWhatEncodeWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lens := []int{0, 1, 31, 32, 255, 256, 65535, 65536, 70000}
	ints := []int{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	var n int
	for _, jl := range []int{0, 2, 31, 32, 255, MaxShort} {
		for _, attempt := range ints {
			for _, dl := range lens {
				for _, kl := range []int{0, 1, 81, MaxKey} {
					if dl > 256 && kl > 1 {
						continue // the long forms once each, with and without a key
					}
					o := Output{JobID: string(randBytes(r, jl)), Attempt: attempt, Stream: uint8(r.Uint32()), Seq: r.Uint64(), Data: randBytes(r, dl)}
					if kl > 0 {
						o.Key = randBytes(r, kl)
					}
					if r.IntN(8) == 0 && dl == 0 {
						o.Data = nil
					}
					e, err := Encode(MsgOutput, 0, o)
					if err != nil {
						t.Fatal(err)
					}
					if !checkParsedOutput(t, e.Body) {
						t.Fatalf("ParseOutput refused what Encode wrote for %d-byte job, attempt %d, %d data bytes, %d key bytes: % x", jl, attempt, dl, kl, e.Body[:min(len(e.Body), 64)])
					}
					n++
				}
			}
		}
	}
	for _, o := range []Output{{JobID: string(make([]byte, MaxShort+1))}, {JobID: "J1", Key: make([]byte, MaxKey+1)}} {
		e, _ := Encode(MsgOutput, 0, o)
		if _, ok := ParseOutput(e.Body); ok {
			t.Fatalf("ParseOutput took a body over a field limit (%d-byte job, %d-byte key)", len(o.JobID), len(o.Key))
		}
	}
	t.Logf("%d encodings read in place", n)
}

// TestParseOutputRefusesOtherForms: bodies that decode to an Output but
// are not what Encode writes for it (a longer integer, a longer length,
// an extra or missing field, an empty key, fields out of order, a byte
// after the map) are left to Decode, never relayed as they are.
func TestParseOutputRefusesOtherForms(t *testing.T) {
	good, _ := Encode(MsgOutput, 0, Output{JobID: "J1", Attempt: 1, Stream: StreamStdout, Seq: 3, Data: []byte("hi")})
	if !checkParsedOutput(t, good.Body) {
		t.Fatal("the plain Output is refused")
	}
	swap := func(old, new []byte) []byte {
		if !bytes.Contains(good.Body, old) {
			t.Fatalf("% x not in % x", old, good.Body)
		}
		return bytes.Replace(good.Body, old, new, 1)
	}
	forms := map[string][]byte{
		"attempt as uint8": swap([]byte("attempt\x01"), []byte("attempt\xcc\x01")),
		"attempt as int8":  swap([]byte("attempt\x01"), []byte("attempt\xd0\x01")),
		"stream as fixint": swap([]byte("stream\xcc\x01"), []byte("stream\x01")),
		"seq as fixint":    swap([]byte("seq\xcf\x00\x00\x00\x00\x00\x00\x00\x03"), []byte("seq\x03")),
		"job id as str8":   swap([]byte("\xa2J1"), []byte("\xd9\x02J1")),
		"data as bin16":    swap([]byte("\xc4\x02hi"), []byte("\xc5\x00\x02hi")),
		"data as str":      swap([]byte("\xc4\x02hi"), []byte("\xa2hi")),
		"fields out of order": EncodeValue(struct {
			Attempt int    `msgpack:"attempt"`
			JobID   string `msgpack:"job"`
			Stream  uint8  `msgpack:"stream"`
			Seq     uint64 `msgpack:"seq"`
			Data    []byte `msgpack:"data"`
		}{1, "J1", 1, 3, []byte("hi")}),
		"extra field": EncodeValue(struct {
			JobID   string `msgpack:"job"`
			Attempt int    `msgpack:"attempt"`
			Stream  uint8  `msgpack:"stream"`
			Seq     uint64 `msgpack:"seq"`
			Data    []byte `msgpack:"data"`
			X       string `msgpack:"x"`
		}{"J1", 1, 1, 3, []byte("hi"), "junk"}),
		"no seq": EncodeValue(struct {
			JobID   string `msgpack:"job"`
			Attempt int    `msgpack:"attempt"`
			Stream  uint8  `msgpack:"stream"`
			Data    []byte `msgpack:"data"`
		}{"J1", 1, 1, []byte("hi")}),
		"empty key": EncodeValue(struct {
			JobID   string `msgpack:"job"`
			Attempt int    `msgpack:"attempt"`
			Stream  uint8  `msgpack:"stream"`
			Seq     uint64 `msgpack:"seq"`
			Data    []byte `msgpack:"data"`
			Key     []byte `msgpack:"key"`
		}{"J1", 1, 1, 3, []byte("hi"), []byte{}}),
		"trailing byte": append(bytes.Clone(good.Body), 0xc0),
		"truncated":     good.Body[:len(good.Body)-1],
	}
	for name, b := range forms {
		if checkParsedOutput(t, b) {
			t.Errorf("%s: ParseOutput took % x", name, b)
		}
	}
}

// FuzzParseOutput: whatever the bytes, ParseOutput does not panic, and a
// body it accepts decodes to what it read and encodes back to itself.
func FuzzParseOutput(f *testing.F) {
	for _, o := range []Output{{JobID: "J1", Attempt: 1, Stream: 1, Seq: 0, Data: []byte("hello")}, {JobID: "J2", Attempt: 300, Stream: 2, Key: make([]byte, 81)}, {Attempt: -40}} {
		e, _ := Encode(MsgOutput, 0, o)
		f.Add(e.Body)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkParsedOutput(t, body)
	})
}

// BenchmarkOutputRelay: what a relay spends per Output, decoding it and
// encoding it again (the master before) against reading it in place.
func BenchmarkOutputRelay(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		o := Output{JobID: "J12345", Attempt: 1, Stream: StreamStdout, Seq: 7, Data: bytes.Repeat([]byte("x"), size), Key: make([]byte, 81)}
		e, _ := Encode(MsgOutput, 0, o)
		b.Run(fmt.Sprintf("decode+encode/%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var d Output
				if err := Decode(e, &d); err != nil {
					b.Fatal(err)
				}
				if _, err := Encode(MsgOutput, 0, d); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("in-place/%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := ParseOutput(e.Body); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}
