package seal

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// WrappedSize is the size of a wrapped content key.
const WrappedSize = 1 + KeySize + KeySize + Overhead

const wrapVersion = 0x01

// GenerateKey returns a new X25519 key pair for a slave: a 32-byte private
// key, to keep secret (mode 0600), and the 32-byte public key it announces.
func GenerateKey() (priv, pub []byte, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: generate key: %w", err)
	}
	return k.Bytes(), k.PublicKey().Bytes(), nil
}

// PublicKey returns the X25519 public key of a 32-byte private key.
func PublicKey(priv []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("seal: private key: %w", err)
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
func Wrap(contentKey, recipientPub, context []byte) ([]byte, error) {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
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
// malformed one with ErrTampered.
func Unwrap(wrapped, recipientPriv, context []byte) ([]byte, error) {
	priv, err := ecdh.X25519().NewPrivateKey(recipientPriv)
	if err != nil {
		return nil, fmt.Errorf("seal: unwrap: private key: %w", err)
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
