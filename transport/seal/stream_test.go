package seal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

var roundTripSizes = []int{0, 1, 100, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2 * ChunkSize, 3<<20 + 7}

var labels = []string{LabelSource, LabelStdin, LabelStdout, LabelStderr, LabelCompile}

func TestSealOpenRoundTrip(t *testing.T) {
	key := NewContentKey()
	for _, label := range labels {
		for _, n := range roundTripSizes {
			t.Run(fmt.Sprintf("%s/%d", label, n), func(t *testing.T) {
				p := testData(n)
				c, err := Seal(key, label, p)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(c)) != SealedSize(int64(n)) {
					t.Fatalf("sealed %d bytes into %d, SealedSize says %d", n, len(c), SealedSize(int64(n)))
				}
				got, err := Open(key, label, c)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, p) {
					t.Fatal("Open returned other bytes")
				}
				got, err = io.ReadAll(mustReader(t, key, label, bytes.NewReader(c)))
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("Reader: %v, equal %v", err, bytes.Equal(got, p))
				}
			})
		}
	}
}

func mustReader(t testing.TB, key []byte, label string, r io.Reader) *Reader {
	t.Helper()
	sr, err := NewReader(key, label, r)
	if err != nil {
		t.Fatal(err)
	}
	return sr
}

// writeInPieces seals p with a Writer, writing pieces of the given size.
func writeInPieces(t testing.TB, key []byte, label string, p []byte, piece int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(key, label, &buf)
	if err != nil {
		t.Fatal(err)
	}
	for rest := p; len(rest) > 0; {
		k := min(piece, len(rest))
		if n, err := w.Write(rest[:k]); n != k || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		rest = rest[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriterReaderRoundTrip(t *testing.T) {
	key := NewContentKey()
	sources := map[string]func(io.Reader) io.Reader{
		"plain":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
	}
	for _, n := range roundTripSizes {
		for _, piece := range []int{1, 1000, ChunkSize, ChunkSize + 3, 1 << 22} {
			if piece == 1 && n > 2*ChunkSize {
				continue // slow and adds nothing
			}
			p := testData(n)
			c := writeInPieces(t, key, LabelStdin, p, piece)
			// The encoding is canonical: same salt, same bytes as Seal.
			if want := sealStream(key, LabelStdin, c[4:4+SaltSize], p); !bytes.Equal(c, want) {
				t.Fatalf("n=%d piece=%d: Writer output differs from Seal with the same salt", n, piece)
			}
			for name, wrap := range sources {
				if name == "onebyte" && n > 2*ChunkSize {
					continue
				}
				got, err := io.ReadAll(mustReader(t, key, LabelStdin, wrap(bytes.NewReader(c))))
				if err != nil || !bytes.Equal(got, p) {
					t.Fatalf("n=%d piece=%d source=%s: %v, equal %v", n, piece, name, err, bytes.Equal(got, p))
				}
			}
		}
	}
}

func TestReaderEOFIsSticky(t *testing.T) {
	key := testKey(1)
	c, _ := Seal(key, LabelSource, []byte("hi"))
	r := mustReader(t, key, LabelSource, bytes.NewReader(c))
	buf := make([]byte, 10)
	if n, err := r.Read(buf); n != 2 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	for range 2 {
		if n, err := r.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read at end = %d, %v; want 0, EOF", n, err)
		}
	}
}

// openBoth opens c with Open and with a Reader fed one byte at a time. It
// checks that both fail with the same sentinel, that Open returns nothing,
// and that the Reader released exactly the plaintext of the chunks before
// the first bad one (wantPrefix bytes of p).
func openBoth(t *testing.T, key []byte, label string, c, p []byte, wantErr error, wantPrefix int) {
	t.Helper()
	got, err := Open(key, label, c)
	if got != nil {
		t.Fatalf("Open returned %d bytes with error %v", len(got), err)
	}
	requireSentinel(t, err, wantErr)
	got, err = io.ReadAll(mustReader(t, key, label, iotest.HalfReader(bytes.NewReader(c))))
	requireSentinel(t, err, wantErr)
	if !bytes.Equal(got, p[:wantPrefix]) {
		t.Fatalf("Reader released %d bytes before failing, want the first %d", len(got), wantPrefix)
	}
}

// threeChunks returns a key, a plaintext of two full chunks and a short
// one, and its stream.
func threeChunks(t *testing.T) (key, p, c []byte) {
	key = testKey(7)
	p = testData(2*ChunkSize + 100)
	c, err := Seal(key, LabelSource, p)
	if err != nil {
		t.Fatal(err)
	}
	return key, p, c
}

func TestFlippedBit(t *testing.T) {
	key, p, c := threeChunks(t)
	c0, _ := chunkAt(0, len(c))
	c1, _ := chunkAt(1, len(c))
	c2, _ := chunkAt(2, len(c))
	cases := []struct {
		name   string
		off    int
		err    error
		prefix int
	}{
		{"magic", 0, ErrTampered, 0},
		{"version", 2, ErrTampered, 0},
		{"kind", 3, ErrTampered, 0},
		{"salt", 4, ErrWrongKey, 0},
		{"salt end", 4 + SaltSize - 1, ErrWrongKey, 0},
		{"mac", macInputSize, ErrWrongKey, 0},
		{"mac end", HeaderSize - 1, ErrWrongKey, 0},
		{"chunk 0 first byte", c0, ErrTampered, 0},
		{"chunk 0 tag", c1 - 1, ErrTampered, 0},
		{"chunk 1 body", c1 + 1000, ErrTampered, ChunkSize},
		{"chunk 1 tag", c2 - Overhead, ErrTampered, ChunkSize},
		{"last chunk body", c2, ErrTampered, 2 * ChunkSize},
		{"last chunk tag", len(c) - 1, ErrTampered, 2 * ChunkSize},
	}
	for _, tc := range cases {
		for _, bit := range []byte{0x01, 0x80} {
			t.Run(fmt.Sprintf("%s/%#x", tc.name, bit), func(t *testing.T) {
				bad := bytes.Clone(c)
				bad[tc.off] ^= bit
				openBoth(t, key, LabelSource, bad, p, tc.err, tc.prefix)
			})
		}
	}
}

// cut returns c without the bytes in [from, to).
func cut(c []byte, from, to int) []byte {
	return append(bytes.Clone(c[:from]), c[to:]...)
}

func TestDroppedReorderedAndExtraChunks(t *testing.T) {
	key, p, c := threeChunks(t)
	s0, e0 := chunkAt(0, len(c))
	s1, e1 := chunkAt(1, len(c))
	s2, _ := chunkAt(2, len(c))
	swapped := append(append(bytes.Clone(c[:s0]), c[s1:e1]...), c[s0:e0]...)
	swapped = append(swapped, c[s2:]...)
	cases := []struct {
		name   string
		c      []byte
		err    error
		prefix int
	}{
		{"drop first chunk", cut(c, s0, e0), ErrTampered, 0},
		{"drop middle chunk", cut(c, s1, e1), ErrTampered, ChunkSize},
		{"drop last chunk", c[:s2], ErrTruncated, 2 * ChunkSize},
		{"swap chunks 0 and 1", swapped, ErrTampered, 0},
		{"repeat chunk 0", append(bytes.Clone(c[:e0]), c[s0:]...), ErrTampered, ChunkSize},
		{"repeat last chunk", append(bytes.Clone(c), c[s2:]...), ErrTampered, 2 * ChunkSize},
		{"one byte after the end", append(bytes.Clone(c), 0), ErrTampered, 2 * ChunkSize},
		{"whole stream twice", append(bytes.Clone(c), c...), ErrTampered, 2 * ChunkSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			openBoth(t, key, LabelSource, tc.c, p, tc.err, tc.prefix)
		})
	}
}

func TestTruncation(t *testing.T) {
	key, p, c := threeChunks(t)
	s1, _ := chunkAt(1, len(c))
	s2, _ := chunkAt(2, len(c))
	cases := []struct {
		n      int
		err    error // nil: any sentinel
		prefix int
	}{
		{0, ErrTruncated, 0},
		{1, ErrTruncated, 0},
		{HeaderSize - 1, ErrTruncated, 0},
		{HeaderSize, ErrTruncated, 0},
		{HeaderSize + 1, ErrTruncated, 0},
		{HeaderSize + Overhead - 1, ErrTruncated, 0},
		{HeaderSize + Overhead, ErrTampered, 0},
		{s1 - 1, ErrTampered, 0},
		{s1, ErrTruncated, ChunkSize},
		{s1 + 1, ErrTruncated, ChunkSize},
		{s1 + Overhead, ErrTampered, ChunkSize},
		{s2 - 1, ErrTampered, ChunkSize},
		{s2, ErrTruncated, 2 * ChunkSize},
		{s2 + 50, ErrTampered, 2 * ChunkSize},
		{len(c) - 1, ErrTampered, 2 * ChunkSize},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			openBoth(t, key, LabelSource, c[:tc.n], p, tc.err, tc.prefix)
		})
	}
}

func TestSplicedFromAnotherPayload(t *testing.T) {
	key, p, c := threeChunks(t)
	s1, e1 := chunkAt(1, len(c))
	otherJob, _ := Seal(testKey(99), LabelSource, p)
	otherLabel, _ := Seal(key, LabelStdin, p)
	otherSalt, _ := Seal(key, LabelSource, p)
	splice := func(from []byte) []byte {
		return append(append(bytes.Clone(c[:s1]), from[s1:e1]...), c[e1:]...)
	}
	for name, from := range map[string][]byte{"job": otherJob, "label": otherLabel, "salt": otherSalt} {
		t.Run("chunk from another "+name, func(t *testing.T) {
			openBoth(t, key, LabelSource, splice(from), p, ErrTampered, ChunkSize)
		})
		t.Run("header from another "+name, func(t *testing.T) {
			bad := append(bytes.Clone(from[:HeaderSize]), c[HeaderSize:]...)
			want := ErrWrongKey
			if name == "salt" {
				want = ErrTampered // an authentic header of the same key and label
			}
			openBoth(t, key, LabelSource, bad, p, want, 0)
		})
	}
	t.Run("wrong key", func(t *testing.T) { openBoth(t, testKey(8), LabelSource, c, p, ErrWrongKey, 0) })
	t.Run("wrong label", func(t *testing.T) { openBoth(t, key, LabelStdin, c, p, ErrWrongKey, 0) })
	t.Run("sequence message as stream", func(t *testing.T) {
		s, _ := NewSequence(key, LabelSource)
		openBoth(t, key, LabelSource, s.SealNext(p[:10], true), p, ErrTampered, 0)
	})
}

// TestNonCanonicalStreams feeds streams that a key holder could build but a
// Writer never does.
func TestNonCanonicalStreams(t *testing.T) {
	key := testKey(3)
	hdr, aead := newHeader(key, LabelStdout, kindStream, testSalt(1))
	var nonce [nonceSize]byte
	p := testData(ChunkSize)
	setNonce(&nonce, 0, false)
	c := aead.Seal(bytes.Clone(hdr), nonce[:], p, nil)
	setNonce(&nonce, 1, true)
	c = aead.Seal(c, nonce[:], nil, nil)
	openBoth(t, key, LabelStdout, c, p, ErrTampered, ChunkSize)

	// A short chunk that is not marked last.
	setNonce(&nonce, 0, false)
	c = aead.Seal(bytes.Clone(hdr), nonce[:], p[:10], nil)
	openBoth(t, key, LabelStdout, c, p, ErrTruncated, 0)
}

func TestBadParameters(t *testing.T) {
	for _, tc := range []struct {
		key   []byte
		label string
	}{{testKey(0)[:31], LabelSource}, {nil, LabelSource}, {testKey(0), ""}, {testKey(0), string(make([]byte, MaxLabel+1))}} {
		if _, err := Seal(tc.key, tc.label, nil); err == nil {
			t.Errorf("Seal(%d-byte key, %d-byte label) succeeded", len(tc.key), len(tc.label))
		}
		if _, err := Open(tc.key, tc.label, nil); err == nil {
			t.Error("Open succeeded")
		}
		if _, err := NewWriter(tc.key, tc.label, io.Discard); err == nil {
			t.Error("NewWriter succeeded")
		}
		if _, err := NewReader(tc.key, tc.label, nil); err == nil {
			t.Error("NewReader succeeded")
		}
		if _, err := NewSequence(tc.key, tc.label); err == nil {
			t.Error("NewSequence succeeded")
		}
		if _, err := NewSequenceOpener(tc.key, tc.label); err == nil {
			t.Error("NewSequenceOpener succeeded")
		}
	}
	if _, err := Seal(testKey(0), string(make([]byte, MaxLabel)), nil); err != nil {
		t.Errorf("label of MaxLabel bytes: %v", err)
	}
}

type failingWriter struct{ after int }

var errDisk = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errDisk
	}
	f.after--
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	w, _ := NewWriter(testKey(0), LabelStdout, &failingWriter{after: 1})
	p := testData(3 * ChunkSize)
	n, err := w.Write(p)
	if !errors.Is(err, errDisk) || n >= len(p) {
		t.Fatalf("Write = %d, %v; want a short write and %v", n, err, errDisk)
	}
	if _, err2 := w.Write([]byte{1}); !errors.Is(err2, errDisk) {
		t.Fatalf("second Write: %v, want the sticky error", err2)
	}
	if err := w.Close(); !errors.Is(err, errDisk) {
		t.Fatalf("Close: %v", err)
	}

	var buf bytes.Buffer
	w, _ = NewWriter(testKey(0), LabelStdout, &buf)
	if buf.Len() != 0 {
		t.Fatal("NewWriter wrote before any chunk was complete")
	}
	w.Write([]byte("x"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	size := buf.Len()
	if err := w.Close(); err != nil || buf.Len() != size {
		t.Fatalf("second Close: %v, wrote %d more bytes", err, buf.Len()-size)
	}
	if _, err := w.Write([]byte("y")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}

func TestReaderSourceError(t *testing.T) {
	key, _, c := threeChunks(t)
	errNet := errors.New("connection reset")
	for _, n := range []int{10, HeaderSize + 10, len(c)} {
		src := io.MultiReader(bytes.NewReader(c[:n]), iotest.ErrReader(errNet))
		_, err := io.ReadAll(mustReader(t, key, LabelSource, src))
		if !errors.Is(err, errNet) {
			t.Errorf("cut at %d: %v, want %v", n, err, errNet)
		}
	}
}
