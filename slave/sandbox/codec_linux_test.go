package sandbox

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func codecSamples() []envelope {
	return []envelope{
		{T: msgRun, Seq: 7, Run: &runMsg{Argv: []string{"./main", "a b", ""}, Env: []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"},
			Rlimits: []rlimitSpec{{Resource: 4, Cur: 0, Max: 0}, {Resource: 7, Cur: 256, Max: 256}, {Resource: 0, Cur: 1<<64 - 1, Max: 1<<64 - 1}}, NoFilter: true}},
		{T: msgRun, Seq: 1, Run: &runMsg{Argv: []string{"/bin/true"}, Reuse: true}},
		{T: msgDone, Done: &doneMsg{Status: 0x7f00, WallNs: 1234567, CPUNs: 999, MaxRSSKiB: 1212, Clean: true, Filtered: true, AttachNs: 10, StartNs: -1, ReapNs: 1 << 40, JoinNs: 5}},
		{T: msgDone, Done: &doneMsg{StartErr: "exec ./main: no such file or directory", Clean: true}},
		{T: msgDone, Seq: 3, Done: &doneMsg{}, Err: "wait: no child processes"},
		{T: msgDone, Err: "unexpected kill message"},
	}
}

// TestCodecRoundTrip encodes each message and decodes it back, and the
// JSON messages still decode as JSON.
func TestCodecRoundTrip(t *testing.T) {
	samples := append(codecSamples(), envelope{T: msgKill, Seq: 9}, envelope{T: msgReady, Ready: &readyMsg{Join: "thread"}})
	for _, m := range samples {
		b, err := encodeMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		if json := m.T != msgRun && m.T != msgDone; json != (b[0] == '{') {
			t.Errorf("%s: encoded as %q", m.T, b)
		}
		var got envelope
		if err := decodeMsg(b, &got); err != nil {
			t.Fatalf("%s: %v", m.T, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", m.T, got, m)
		}
	}
}

// TestCodecBytes pins the binary form of a done message.
func TestCodecBytes(t *testing.T) {
	b, err := encodeMsg(envelope{T: msgDone, Seq: 2, Done: &doneMsg{Status: 0x100, WallNs: -3, Clean: true, Filtered: true, StartErr: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{tagDone, 2, 0, 7, 1, 'x', 0x80, 0x02, 5, 0, 0, 0, 0, 0, 0}
	if !bytes.Equal(b, want) {
		t.Fatalf("got % x, want % x", b, want)
	}
	b, _ = encodeMsg(envelope{T: msgRun, Seq: 300, Run: &runMsg{Argv: []string{"a"}, Rlimits: []rlimitSpec{{Resource: 4, Cur: 1, Max: 2}}}})
	if want := []byte{tagRun, 0xac, 0x02, 0, 1, 1, 'a', 0, 1, 4, 1, 2}; !bytes.Equal(b, want) {
		t.Fatalf("got % x, want % x", b, want)
	}
}

// TestCodecRefuses checks that truncated, padded and lying messages are
// refused without allocating what they claim.
func TestCodecRefuses(t *testing.T) {
	for _, m := range codecSamples() {
		b, _ := encodeMsg(m)
		for n := 1; n < len(b); n++ {
			var got envelope
			if err := decodeMsg(b[:n], &got); !errors.Is(err, errCodec) {
				t.Errorf("%s cut to %d of %d bytes: %v", m.T, n, len(b), err)
			}
		}
		var got envelope
		if err := decodeMsg(append(b, 0), &got); !errors.Is(err, errCodec) {
			t.Errorf("%s with a byte more: %v", m.T, err)
		}
	}
	for _, b := range [][]byte{
		{9},                                    // unknown tag
		{tagRun, 1, 0, 0xff, 0xff, 0xff, 0x0f}, // argc of 2^32: more than the bytes left
		{tagRun, 1, 0, 0, 0, 1, 0x80, 0x80, 0x08, 0, 0},                          // rlimit resource 2^17
		{tagDone, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x1f, 0, 0, 0, 0, 0, 0, 0}, // status past 32 bits
		{tagDone, 0, 0xff, 0x7f},                                                 // an error string past the message
	} {
		var got envelope
		if err := decodeMsg(b, &got); !errors.Is(err, errCodec) {
			t.Errorf("% x: %v", b, err)
		}
	}
}

// FuzzCodec decodes anything without panicking, and what decodes
// re-encodes to a message that decodes the same.
func FuzzCodec(f *testing.F) {
	for _, m := range codecSamples() {
		b, _ := encodeMsg(m)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] == '{' {
			return // JSON: encoding/json's
		}
		var m envelope
		if decodeMsg(b, &m) != nil {
			return
		}
		again, err := encodeMsg(m)
		if err != nil {
			t.Fatal(err)
		}
		var m2 envelope
		if err := decodeMsg(again, &m2); err != nil {
			t.Fatalf("re-encoded %q: %v", again, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("\n%+v\n%+v", m, m2)
		}
	})
}
