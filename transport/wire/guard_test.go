package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// hugeBodies are message bodies whose one field claims about 4 billion
// elements or bytes in a few bytes. Without Validate, msgpack v5.4.1 would
// try to allocate them (its slice limit is never applied, see guard.go), so
// these cases must be stopped before the decoder runs. We do not test the
// unguarded decoder: it would exhaust the machine's memory.
var hugeBodies = []struct {
	name string
	t    MsgType
	body string
}{
	{"array32 of toolchains", MsgRegister, "81 aa 746f6f6c636861696e73 dd ffffffff"},
	{"array32 of features", MsgHello, "81 a8 6665617475726573 dd fffffff0 a0"},
	{"map32 limits", MsgWelcome, "81 a6 6c696d697473 df ffffffff"},
	{"str32 role", MsgHello, "81 a4 726f6c65 db ffffffff 61"},
	{"bin32 seal key", MsgRegister, "81 a8 7365616c5f6b6579 c6 ffffffff 00"},
	{"ext32", MsgHello, "81 a4 726f6c65 c9 ffffffff 01"},
	{"array16 at top", MsgInfo, "dc ffff"},
}

// frameOf wraps body in a frame of type t with id 0.
func frameOf(t MsgType, body []byte) []byte {
	b, err := AppendFrame(nil, Envelope{Type: t, Body: body}, MaxFrame)
	if err != nil {
		panic(err)
	}
	return b
}

func TestAllocationGuard(t *testing.T) {
	for _, tt := range hugeBodies {
		t.Run(tt.name, func(t *testing.T) {
			body := unhex(t, tt.body)
			frame := frameOf(tt.t, body)
			if _, err := ReadFrame(bytes.NewReader(frame), MaxFrame); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ReadFrame = %v, want ErrMalformed", err)
			}
			// Decode must guard bodies that did not come through ReadFrame.
			v, _ := NewBody(tt.t)
			if err := Decode(Envelope{Type: tt.t, Body: body}, v); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode = %v, want ErrMalformed", err)
			}
			allocs := testing.AllocsPerRun(100, func() {
				ReadFrame(bytes.NewReader(frame), MaxFrame)
				Decode(Envelope{Type: tt.t, Body: body}, v)
			})
			if allocs > 50 {
				t.Errorf("%.0f allocations per run, want at most 50", allocs)
			}
			if n := allocBytes(func() {
				ReadFrame(bytes.NewReader(frame), MaxFrame)
				Decode(Envelope{Type: tt.t, Body: body}, v)
			}); n > 64*len(frame)+4096 {
				t.Errorf("%d bytes allocated per run for a %d-byte frame", n, len(frame))
			}
		})
	}
}

// TestHugeEnvelopeHeaders puts the 4 GiB claims in the envelope itself.
func TestHugeEnvelopeHeaders(t *testing.T) {
	for _, h := range []string{"dd ffffffff", "df ffffffff", "db ffffffff", "c6 ffffffff", "93 01 00 c6 ffffffff"} {
		env := unhex(t, h)
		frame := binary.BigEndian.AppendUint32(nil, uint32(len(env)))
		frame = append(frame, env...)
		if _, err := ReadFrame(bytes.NewReader(frame), MaxFrame); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ReadFrame = %v, want ErrMalformed", h, err)
		}
		if n := allocBytes(func() { ReadFrame(bytes.NewReader(frame), MaxFrame) }); n > 4096 {
			t.Errorf("%s: %d bytes allocated per run", h, n)
		}
	}
}

// TestGuardRefusesLongArrays fills a whole frame with an array of one-byte
// elements, which decoded into 16-byte string headers a million at a time
// before the guard counted entries: it is refused before decoding, and the
// longest array the guard lets through is refused by the field limits.
func TestGuardRefusesLongArrays(t *testing.T) {
	features := func(n int) []byte {
		body := []byte{0x81, 0xa8}
		body = append(body, "features"...)
		body = append(body, 0xdd)
		body = binary.BigEndian.AppendUint32(body, uint32(n))
		return append(body, bytes.Repeat([]byte{0xa0}, n)...) // n empty strings
	}
	frame := frameOf(MsgHello, features(MaxFrame-64))
	used := allocBytes(func() {
		if _, err := ReadFrame(bytes.NewReader(frame), MaxFrame); !errors.Is(err, ErrMalformed) {
			t.Fatalf("a million-entry array: ReadFrame = %v, want ErrMalformed", err)
		}
	})
	if used > 4*len(frame) { // the frame itself, read in doubling chunks
		t.Errorf("%d bytes allocated for a %d-byte frame", used, len(frame))
	}
	e, err := ReadFrame(bytes.NewReader(frameOf(MsgHello, features(MaxItems))), MaxFrame)
	if err != nil {
		t.Fatalf("%d entries: %v", MaxItems, err)
	}
	if err := Decode(e, new(Hello)); !errors.Is(err, ErrFieldLimit) {
		t.Fatalf("Hello with %d features: Decode = %v, want ErrFieldLimit", MaxItems, err)
	}
	if _, err := ReadFrame(bytes.NewReader(frameOf(MsgHello, features(MaxItems+1))), MaxFrame); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d entries: ReadFrame = %v, want ErrMalformed", MaxItems+1, err)
	}
}

// allocBytes returns the bytes f allocates, averaged over a few runs.
func allocBytes(f func()) int {
	const runs = 5
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return int(after.TotalAlloc-before.TotalAlloc) / runs
}

func TestValidate(t *testing.T) {
	deep := func(n int) []byte { return append(bytes.Repeat([]byte{0x91}, n), 0x00) }
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"nil", []byte{0xc0}, true},
		{"fixints", []byte{0x92, 0x7f, 0xe0}, true},
		{"floats", unhex(t, "92 ca00000000 cb0000000000000000"), true},
		{"fixext", unhex(t, "95 d40100 d5010000 d60100000000 d7010000000000000000 00"), true},
		{"fixext4 short", unhex(t, "d6 01 000000"), false},
		{"fixext16", append([]byte{0xd8, 0x01}, make([]byte, 16)...), true},
		{"ext8", unhex(t, "c7 02 05 aabb"), true},
		{"ext8 short", unhex(t, "c7 03 05 aabb"), false},
		{"map needs two bytes per entry", unhex(t, "82 01 02 03"), false},
		{"map", unhex(t, "82 01 02 03 04"), true},
		{"array16", unhex(t, "dc 0002 c2 c3"), true},
		{"array16 over MaxItems", append(unhex(t, "dc 0401"), make([]byte, 1025)...), false},
		{"map16 over MaxItems", append(unhex(t, "de 0401"), make([]byte, 2050)...), false},
		{"array16 at MaxItems", append(unhex(t, "dc 0400"), make([]byte, 1024)...), true},
		{"str8", unhex(t, "d9 03 616263"), true},
		{"str16 short", unhex(t, "da 0004 616263"), false},
		{"truncated length", unhex(t, "dd 0000"), false},
		{"empty", nil, false},
		{"32 levels", deep(32), true},
		{"33 levels", deep(33), false},
		{"33 levels, innermost empty", append(bytes.Repeat([]byte{0x91}, 32), 0x90), false},
		{"never used", []byte{0xc1}, false},
		{"trailing", []byte{0xc0, 0xc0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("Validate(% x) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

func TestValidateDeepNestingDoesNotRecurseFar(t *testing.T) {
	b := append(bytes.Repeat([]byte{0x91}, MaxFrame), 0x00)
	if err := Validate(b); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("Validate(1 MiB of nesting) = %v", err)
	}
}
