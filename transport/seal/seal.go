package seal

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sentinel errors. Every error the package returns for bad input matches
// exactly one of them with errors.Is.
var (
	// ErrWrongKey reports a header or wrapped key that does not authenticate
	// under the key, label or context given: a wrong key, a payload of another
	// job or label, or an altered header.
	ErrWrongKey = errors.New("seal: wrong key, label or context (or altered header)")
	// ErrTruncated reports data that ends before its last chunk or message.
	ErrTruncated = errors.New("seal: sealed data is truncated")
	// ErrTampered reports data that fails authentication or parsing: a
	// flipped bit, a dropped, repeated or reordered chunk, a chunk of another
	// payload, or data after the last chunk.
	ErrTampered = errors.New("seal: sealed data was tampered with")
)

// Sizes of the format; see the Format section of the package documentation.
const (
	// KeySize is the size of content keys and of X25519 keys.
	KeySize = 32
	// ChunkSize is the plaintext size of every stream chunk but the last.
	ChunkSize = 64 << 10
	// Overhead is the size of the authentication tag added to each chunk.
	Overhead = chacha20poly1305.Overhead
	// SaltSize is the size of the random salt in a payload header.
	SaltSize = 16
	// HeaderSize is the size of the header that starts a stream or sequence.
	HeaderSize = 4 + SaltSize + sha256.Size
	// MaxLabel is the longest payload label accepted.
	MaxLabel = 255
)

// Payload labels used by Kiln. Any label of 1 to MaxLabel bytes is allowed.
const (
	LabelSource  = "source"
	LabelStdin   = "stdin"
	LabelStdout  = "stdout"
	LabelStderr  = "stderr"
	LabelCompile = "compile"
	LabelResult  = "result" // a Result's verdict (status, exit code, times, sizes)
)

const (
	version      = 0x01
	kindStream   = 0x01
	kindSequence = 0x02
	nonceSize    = chacha20poly1305.NonceSize
	lastFlag     = 0x01
	macInputSize = 4 + SaltSize
)

// NewContentKey returns a fresh random content key of KeySize bytes.
func NewContentKey() []byte {
	k := make([]byte, KeySize)
	rand.Read(k) // never fails; see crypto/rand.Read
	return k
}

// kindName names a payload kind in the key derivation.
func kindName(kind byte) string {
	if kind == kindSequence {
		return "sequence"
	}
	return "stream"
}

// checkParams validates a content key and a label.
func checkParams(key []byte, label string) error {
	if len(key) != KeySize {
		return fmt.Errorf("seal: content key is %d bytes, want %d", len(key), KeySize)
	}
	if len(label) == 0 || len(label) > MaxLabel {
		return fmt.Errorf("seal: label must be 1 to %d bytes, got %d", MaxLabel, len(label))
	}
	return nil
}

// payloadKeys derives the AEAD and the header MAC key of one payload.
func payloadKeys(key []byte, label string, kind byte, salt []byte) (cipher.AEAD, []byte) {
	info := "kiln seal v1 " + kindName(kind) + "\x00" + label
	okm, err := hkdf.Key(sha256.New, key, salt, info, 2*KeySize)
	if err != nil {
		panic("seal: hkdf: " + err.Error()) // only for lengths over 255*32
	}
	aead, err := chacha20poly1305.New(okm[:KeySize])
	if err != nil {
		panic("seal: chacha20poly1305: " + err.Error()) // key size is fixed
	}
	return aead, okm[KeySize:]
}

// headerMAC computes the MAC over the first macInputSize bytes of hdr.
func headerMAC(macKey, hdr []byte) []byte {
	m := hmac.New(sha256.New, macKey)
	m.Write(hdr[:macInputSize])
	return m.Sum(nil)
}

// newHeader builds a header with the given salt and returns it with the
// payload's AEAD.
func newHeader(key []byte, label string, kind byte, salt []byte) ([]byte, cipher.AEAD) {
	hdr := make([]byte, HeaderSize)
	hdr[0], hdr[1], hdr[2], hdr[3] = 'k', 's', version, kind
	copy(hdr[4:], salt)
	aead, macKey := payloadKeys(key, label, kind, salt)
	copy(hdr[macInputSize:], headerMAC(macKey, hdr))
	return hdr, aead
}

// randomSalt returns a fresh payload salt.
func randomSalt() []byte {
	s := make([]byte, SaltSize)
	rand.Read(s) // never fails; see crypto/rand.Read
	return s
}

// parseHeader checks a HeaderSize-byte header of the given kind and returns
// the payload's AEAD.
func parseHeader(key []byte, label string, kind byte, hdr []byte) (cipher.AEAD, error) {
	if hdr[0] != 'k' || hdr[1] != 's' {
		return nil, fmt.Errorf("%w: not a sealed payload (bad magic %x)", ErrTampered, hdr[:2])
	}
	if hdr[2] != version {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrTampered, hdr[2])
	}
	if hdr[3] != kind {
		return nil, fmt.Errorf("%w: payload kind is %d, want %d (%s)", ErrTampered, hdr[3], kind, kindName(kind))
	}
	aead, macKey := payloadKeys(key, label, kind, hdr[4:4+SaltSize])
	if subtle.ConstantTimeCompare(headerMAC(macKey, hdr), hdr[macInputSize:HeaderSize]) != 1 {
		return nil, fmt.Errorf("%w: header of %q payload does not authenticate", ErrWrongKey, label)
	}
	return aead, nil
}

// setNonce writes the nonce of chunk i into n.
func setNonce(n *[nonceSize]byte, i uint64, last bool) {
	clear(n[:3])
	for j := 0; j < 8; j++ {
		n[3+j] = byte(i >> (56 - 8*j))
	}
	n[nonceSize-1] = 0
	if last {
		n[nonceSize-1] = lastFlag
	}
}
