package seal

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// sealMessages seals msgs as one sequence, the last one marked last.
func sealMessages(t testing.TB, key []byte, label string, msgs [][]byte) [][]byte {
	t.Helper()
	s, err := NewSequence(key, label)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = s.SealNext(m, i == len(msgs)-1)
	}
	return out
}

func testMessages() [][]byte {
	return [][]byte{[]byte("hello\n"), nil, testData(5000), []byte("x"), testData(ChunkSize + 1)}
}

func mustOpener(t testing.TB, key []byte, label string) *SequenceOpener {
	t.Helper()
	o, err := NewSequenceOpener(key, label)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestSequenceRoundTrip(t *testing.T) {
	key := NewContentKey()
	for _, label := range labels {
		for n := 1; n <= len(testMessages()); n++ {
			msgs := testMessages()[:n]
			sealed := sealMessages(t, key, label, msgs)
			if len(sealed[0]) != HeaderSize+len(msgs[0])+Overhead {
				t.Fatalf("first message is %d bytes", len(sealed[0]))
			}
			o := mustOpener(t, key, label)
			for i, c := range sealed {
				p, last, err := o.OpenNext(c)
				if err != nil || !bytes.Equal(p, msgs[i]) || last != (i == n-1) {
					t.Fatalf("%s: message %d of %d: last=%v err=%v equal=%v", label, i, n, last, err, bytes.Equal(p, msgs[i]))
				}
			}
			if err := o.Finish(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestSequencesNeverShareNonces(t *testing.T) {
	key := testKey(1)
	a := sealMessages(t, key, LabelStdout, [][]byte{[]byte("same")})
	b := sealMessages(t, key, LabelStdout, [][]byte{[]byte("same")})
	if bytes.Equal(a[0][HeaderSize:], b[0][HeaderSize:]) {
		t.Fatal("two sequences under one key and label produced the same ciphertext")
	}
}

// openSequence opens msgs in order and returns how many opened and the
// first error, or Finish's error if all opened.
func openSequence(t *testing.T, key []byte, label string, msgs [][]byte) (int, error) {
	t.Helper()
	o := mustOpener(t, key, label)
	for i, c := range msgs {
		p, last, err := o.OpenNext(c)
		if err != nil {
			if p != nil || last {
				t.Fatalf("OpenNext failed but returned %d bytes, last=%v", len(p), last)
			}
			// Errors are sticky.
			if _, _, err2 := o.OpenNext(msgs[0]); err2 != err {
				t.Fatalf("error not sticky: %v then %v", err, err2)
			}
			if err2 := o.Finish(); err2 != err {
				t.Fatalf("Finish after error: %v, want %v", err2, err)
			}
			return i, err
		}
	}
	return len(msgs), o.Finish()
}

func TestSequenceTampering(t *testing.T) {
	key := testKey(5)
	m := sealMessages(t, key, LabelStdout, testMessages())
	other := sealMessages(t, key, LabelStdout, testMessages())
	otherJob := sealMessages(t, testKey(6), LabelStdout, testMessages())
	otherLabel := sealMessages(t, key, LabelStderr, testMessages())
	flip := func(c []byte, off int) []byte {
		c = bytes.Clone(c)
		c[(off+len(c))%len(c)] ^= 0x10
		return c
	}
	seq := func(msgs ...[]byte) [][]byte { return msgs }
	cases := []struct {
		name   string
		msgs   [][]byte
		err    error
		opened int
	}{
		{"replay first", seq(m[0], m[0]), ErrTampered, 1},
		{"replay middle", seq(m[0], m[1], m[2], m[2]), ErrTampered, 3},
		{"reorder", seq(m[0], m[2], m[1]), ErrTampered, 1},
		{"drop first", seq(m[1], m[2]), ErrTampered, 0},
		{"drop middle", seq(m[0], m[1], m[3]), ErrTampered, 2},
		{"after last", append(slices.Clone(m), m[4]), ErrTampered, 5},
		{"replay last", append(slices.Clone(m), m[1]), ErrTampered, 5},
		{"no last message", m[:4], ErrTruncated, 4},
		{"nothing at all", nil, ErrTruncated, 0},
		{"message of another sequence", seq(m[0], other[1]), ErrTampered, 1},
		{"first message of another sequence", seq(other[0], m[1]), ErrTampered, 1},
		{"message of another job", seq(m[0], otherJob[1]), ErrTampered, 1},
		{"first message of another job", seq(otherJob[0]), ErrWrongKey, 0},
		{"first message of another label", seq(otherLabel[0]), ErrWrongKey, 0},
		{"flip magic", seq(flip(m[0], 0)), ErrTampered, 0},
		{"flip kind", seq(flip(m[0], 3)), ErrTampered, 0},
		{"flip salt", seq(flip(m[0], 5)), ErrWrongKey, 0},
		{"flip mac", seq(flip(m[0], HeaderSize-1)), ErrWrongKey, 0},
		{"flip first body", seq(flip(m[0], HeaderSize)), ErrTampered, 0},
		{"flip first tag", seq(flip(m[0], -1)), ErrTampered, 0},
		{"flip later body", seq(m[0], m[1], flip(m[2], 0)), ErrTampered, 2},
		{"flip later tag", seq(m[0], m[1], flip(m[2], -1)), ErrTampered, 2},
		{"short first", seq(m[0][:HeaderSize-1]), ErrTampered, 0},
		{"header only", seq(m[0][:HeaderSize+Overhead-1]), ErrTampered, 0},
		{"short later", seq(m[0], m[1][:Overhead-1]), ErrTampered, 1},
		{"cut later", seq(m[0], m[1], m[2][:100]), ErrTampered, 2},
		{"extra byte", seq(m[0], append(bytes.Clone(m[1]), 0)), ErrTampered, 1},
		{"stream as sequence", seq(mustSeal(t, key, LabelStdout, []byte("x"))), ErrTampered, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opened, err := openSequence(t, key, LabelStdout, tc.msgs)
			requireSentinel(t, err, tc.err)
			if opened != tc.opened {
				t.Fatalf("opened %d messages before failing, want %d", opened, tc.opened)
			}
		})
	}
}

func mustSeal(t testing.TB, key []byte, label string, p []byte) []byte {
	t.Helper()
	c, err := Seal(key, label, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSealNextAfterLastPanics(t *testing.T) {
	s, _ := NewSequence(testKey(0), LabelStdout)
	s.SealNext(nil, true)
	defer func() {
		if r := recover(); r == nil || fmt.Sprint(r) != "seal: SealNext after the last message" {
			t.Fatalf("recover() = %v", r)
		}
	}()
	s.SealNext(nil, false)
}
