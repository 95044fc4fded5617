package seal

import (
	"bytes"
	"errors"
	"testing"
)

// testKey returns a fixed content key whose bytes start at seed.
func testKey(seed byte) []byte {
	k := make([]byte, KeySize)
	for i := range k {
		k[i] = seed + byte(i)
	}
	return k
}

// testSalt returns a fixed salt filled with b.
func testSalt(b byte) []byte { return bytes.Repeat([]byte{b}, SaltSize) }

// testData returns n bytes of a fixed pattern that differs between chunks.
func testData(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i/ChunkSize)
	}
	return p
}

// sentinels are the errors every decoding failure must match.
var sentinels = []error{ErrWrongKey, ErrTruncated, ErrTampered}

// requireSentinel fails unless err matches exactly the sentinel want, or,
// when want is nil, exactly one of the sentinels.
func requireSentinel(t testing.TB, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	matched := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			matched++
		}
	}
	if matched != 1 {
		t.Fatalf("error %q matches %d sentinels, want 1", err, matched)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("error %q does not match %v", err, want)
	}
}

// chunkAt returns the bounds of chunk i in a stream of total bytes.
func chunkAt(i, total int) (int, int) {
	start := HeaderSize + i*fullChunk
	return start, min(total, start+fullChunk)
}
