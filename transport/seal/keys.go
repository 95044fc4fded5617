package seal

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// WrappedSize is the size of a wrapped content key.
const WrappedSize = 1 + KeySize + KeySize + Overhead

const wrapVersion = 0x01

// scalarMults counts the X25519 scalar multiplications of this package:
// each costs about 50 µs, most of what sealing a small job costs.
var scalarMults atomic.Uint64

// ScalarMults returns how many X25519 scalar multiplications the package
// has done since the process started: making or parsing a private key
// (its public key is computed) and each key agreement count one. Tests
// and benchmarks use it to count what sealing a job costs.
func ScalarMults() uint64 { return scalarMults.Load() }

// GenerateKey returns a new X25519 key pair for a slave: a 32-byte private
// key, to keep secret (mode 0600), and the 32-byte public key it announces.
func GenerateKey() (priv, pub []byte, err error) {
	k, err := NewPrivateKey()
	if err != nil {
		return nil, nil, err
	}
	return k.Bytes(), k.PublicKey().Bytes(), nil
}

// NewPrivateKey returns a new random X25519 private key, its public key
// computed (one scalar multiplication).
func NewPrivateKey() (*ecdh.PrivateKey, error) {
	scalarMults.Add(1)
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("seal: generate key: %w", err)
	}
	return k, nil
}

// ParsePrivateKey parses a 32-byte X25519 private key and computes its
// public key (one scalar multiplication). Callers that unwrap more than
// once with one key parse it once and use [UnwrapWith].
func ParsePrivateKey(priv []byte) (*ecdh.PrivateKey, error) {
	scalarMults.Add(1)
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("seal: private key: %w", err)
	}
	return k, nil
}

// PublicKey returns the X25519 public key of a 32-byte private key.
func PublicKey(priv []byte) ([]byte, error) {
	k, err := ParsePrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return k.PublicKey().Bytes(), nil
}

// Context encodes parts, for example a job id and a purpose, into a wrap
// context. Each part is written as a uvarint length and its bytes, so two
// different lists of parts never give the same context.
func Context(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = binary.AppendUvarint(b, uint64(len(p)))
		b = append(b, p...)
	}
	return b
}

// Wrap encrypts a content key for the holder of the X25519 private key that
// matches recipientPub. The result, WrappedSize bytes, opens only with that
// private key and the same context.
// It costs two scalar multiplications: the fresh ephemeral key and the key
// agreement.
func Wrap(contentKey, recipientPub, context []byte) ([]byte, error) {
	eph, err := NewPrivateKey()
	if err != nil {
		return nil, fmt.Errorf("seal: wrap: %w", err)
	}
	return wrap(contentKey, recipientPub, context, eph)
}

// wrap is Wrap with a given ephemeral key.
func wrap(contentKey, recipientPub, context []byte, eph *ecdh.PrivateKey) ([]byte, error) {
	if len(contentKey) != KeySize {
		return nil, fmt.Errorf("seal: wrap: content key is %d bytes, want %d", len(contentKey), KeySize)
	}
	pub, err := ecdh.X25519().NewPublicKey(recipientPub)
	if err != nil {
		return nil, fmt.Errorf("seal: wrap: recipient key: %w", err)
	}
	scalarMults.Add(1)
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("seal: wrap: recipient key: %w", err)
	}
	ephPub := eph.PublicKey().Bytes()
	aead := wrapAEAD(shared, ephPub, recipientPub, context)
	out := make([]byte, 0, WrappedSize)
	out = append(out, wrapVersion)
	out = append(out, ephPub...)
	var nonce [nonceSize]byte
	return aead.Seal(out, nonce[:], contentKey, out[:1]), nil
}

// Unwrap recovers a content key wrapped by Wrap for recipientPriv and
// context. A wrap for another key or context fails with ErrWrongKey, a
// malformed one with ErrTampered. It parses recipientPriv each time (two
// scalar multiplications in all); [UnwrapWith] takes a parsed key (one).
func Unwrap(wrapped, recipientPriv, context []byte) ([]byte, error) {
	priv, err := ParsePrivateKey(recipientPriv)
	if err != nil {
		return nil, err
	}
	return UnwrapWith(wrapped, priv, context)
}

// UnwrapWith is [Unwrap] with a parsed private key: one scalar
// multiplication.
func UnwrapWith(wrapped []byte, priv *ecdh.PrivateKey, context []byte) ([]byte, error) {
	if priv == nil || priv.Curve() != ecdh.X25519() {
		return nil, fmt.Errorf("seal: unwrap: not an X25519 private key")
	}
	if len(wrapped) != WrappedSize {
		return nil, fmt.Errorf("%w: wrapped key is %d bytes, want %d", ErrTampered, len(wrapped), WrappedSize)
	}
	if wrapped[0] != wrapVersion {
		return nil, fmt.Errorf("%w: wrapped key version %d, want %d", ErrTampered, wrapped[0], wrapVersion)
	}
	ephPub := wrapped[1 : 1+KeySize]
	eph, err := ecdh.X25519().NewPublicKey(ephPub)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key: %v", ErrTampered, err)
	}
	scalarMults.Add(1)
	shared, err := priv.ECDH(eph)
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key has a low-order ephemeral key", ErrTampered)
	}
	aead := wrapAEAD(shared, ephPub, priv.PublicKey().Bytes(), context)
	var nonce [nonceSize]byte
	key, err := aead.Open(nil, nonce[:], wrapped[1+KeySize:], wrapped[:1])
	if err != nil {
		return nil, fmt.Errorf("%w: wrapped key does not open with this private key and context", ErrWrongKey)
	}
	return key, nil
}

// wrapAEAD derives the AEAD that seals a content key.
func wrapAEAD(shared, ephPub, recipientPub, context []byte) cipher.AEAD {
	salt := make([]byte, 0, 2*KeySize)
	salt = append(append(salt, ephPub...), recipientPub...)
	k, err := hkdf.Key(sha256.New, shared, salt, "kiln seal v1 wrap"+string(context), KeySize)
	if err != nil {
		panic("seal: hkdf: " + err.Error()) // length is fixed
	}
	aead, err := chacha20poly1305.New(k)
	if err != nil {
		panic("seal: chacha20poly1305: " + err.Error()) // key size is fixed
	}
	return aead
}
