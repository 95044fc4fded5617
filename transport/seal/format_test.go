package seal

// These tests rebuild the documented format from the primitives with a
// separate implementation (x/crypto's hkdf and curve25519 instead of the
// standard library's), and pin a few byte vectors, so that a change to the
// format cannot go unnoticed.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
	xhkdf "golang.org/x/crypto/hkdf"
)

func specHKDF(t *testing.T, ikm, salt []byte, info string, n int) []byte {
	out := make([]byte, n)
	if _, err := io.ReadFull(xhkdf.New(sha256.New, ikm, salt, []byte(info)), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// specStream builds a stream exactly as the package doc describes it.
func specStream(t *testing.T, key []byte, label string, salt, p []byte) []byte {
	okm := specHKDF(t, key, salt, "kiln seal v1 stream\x00"+label, 64)
	hdr := append([]byte{'k', 's', 1, 1}, salt...)
	m := hmac.New(sha256.New, okm[32:])
	m.Write(hdr)
	out := m.Sum(hdr)
	aead, _ := chacha20poly1305.New(okm[:32])
	for i := 0; ; i++ {
		chunk := p[min(len(p), i*65536):min(len(p), (i+1)*65536)]
		last := (i+1)*65536 >= len(p)
		nonce := make([]byte, 12)
		nonce[10] = byte(i) // tests stay under 256 chunks
		if last {
			nonce[11] = 1
		}
		out = aead.Seal(out, nonce, chunk, nil)
		if last {
			return out
		}
	}
}

func TestStreamMatchesSpec(t *testing.T) {
	for _, n := range []int{0, 1, 65535, 65536, 65537, 3*65536 + 9} {
		key, salt, p := testKey(9), testSalt(0xa5), testData(n)
		if got, want := sealStream(key, "stdout", salt, p), specStream(t, key, "stdout", salt, p); !bytes.Equal(got, want) {
			t.Fatalf("n=%d: stream differs from the spec", n)
		}
	}
}

func TestSequenceMatchesSpec(t *testing.T) {
	key, salt := testKey(9), testSalt(0x5a)
	okm := specHKDF(t, key, salt, "kiln seal v1 sequence\x00stderr", 64)
	hdr := append([]byte{'k', 's', 1, 2}, salt...)
	m := hmac.New(sha256.New, okm[32:])
	m.Write(hdr)
	aead, _ := chacha20poly1305.New(okm[:32])
	want0 := aead.Seal(m.Sum(hdr), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, []byte("a"), nil)
	want1 := aead.Seal(nil, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, []byte("bc"), nil)
	s := newSequence(key, "stderr", salt)
	if got := s.SealNext([]byte("a"), false); !bytes.Equal(got, want0) {
		t.Fatalf("message 0 = %x, want %x", got, want0)
	}
	if got := s.SealNext([]byte("bc"), true); !bytes.Equal(got, want1) {
		t.Fatalf("message 1 = %x, want %x", got, want1)
	}
}

func TestWrapMatchesSpec(t *testing.T) {
	recipientPriv := bytes.Repeat([]byte{0x07}, 32)
	recipientPub, _ := curve25519.X25519(recipientPriv, curve25519.Basepoint)
	ephPriv := bytes.Repeat([]byte{0x42}, 32)
	ephPub, _ := curve25519.X25519(ephPriv, curve25519.Basepoint)
	shared, _ := curve25519.X25519(ephPriv, recipientPub)
	ctx := Context("job-1", "input")
	k := specHKDF(t, shared, append(bytes.Clone(ephPub), recipientPub...), "kiln seal v1 wrap"+string(ctx), 32)
	aead, _ := chacha20poly1305.New(k)
	ck := testKey(1)
	want := aead.Seal(append([]byte{1}, ephPub...), make([]byte, 12), ck, []byte{1})

	got, err := wrap(ck, recipientPub, ctx, testEphemeral(t))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("wrap = %x, %v; want %x", got, err, want)
	}
	if key, err := Unwrap(want, recipientPriv, ctx); err != nil || !bytes.Equal(key, ck) {
		t.Fatalf("Unwrap(spec) = %x, %v", key, err)
	}
}

// Pinned vectors. If one of these changes, the format changed: bump the
// version byte instead.
func TestPinnedVectors(t *testing.T) {
	stream := sealStream(testKey(0), "source", testSalt(1), []byte("print(1)\n"))
	pin(t, "stream", stream, pinnedStream)
	s := newSequence(testKey(0), "stdout", testSalt(2))
	pin(t, "sequence", append(s.SealNext([]byte("1\n"), false), s.SealNext(nil, true)...), pinnedSequence)
	recipientPub, _ := PublicKey(bytes.Repeat([]byte{0x07}, 32))
	w, err := wrap(testKey(0), recipientPub, Context("17", "input"), testEphemeral(t))
	if err != nil {
		t.Fatal(err)
	}
	pin(t, "wrap", w, pinnedWrap)
}

func pin(t *testing.T, name string, got []byte, want string) {
	t.Helper()
	if hex.EncodeToString(got) != want {
		t.Errorf("%s vector changed:\n got %x\nwant %s", name, got, want)
	}
}

const (
	pinnedStream   = "6b73010101010101010101010101010101010101be637a3f6e79293a35a38606029e7bab82caf8b4bfb98e328af23cd64b7ce89b876e725ff9277286bc50bf3cf8f76bea0baab087409be05a1a"
	pinnedSequence = "6b730102020202020202020202020202020202027cbaf844c461a836529df0974bc9ae307514d5ef5e3f0467e5c2e5bb346d5c5de0240feb58d70f5b24ed4171671fdfb844a5c199b20b776497f9228848dc8de6e900"
	pinnedWrap     = "01132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472170f816c7c945b55a54f229b26cb3db8407d091f6426043eb467678c983f716824e5c75822020c447a9038825dac4a33"
)
