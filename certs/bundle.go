package certs

import (
	"crypto"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// PEM block types of bundles and CA files.
const (
	pemCert    = "CERTIFICATE"
	pemKey     = "PRIVATE KEY" // PKCS #8
	pemSealKey = "KILN SEAL KEY"
)

// SealKeySize is the size of an X25519 private sealing key.
const SealKeySize = 32

// Bundle is what one node needs to join the cluster: the cluster CA
// certificate, its own certificate and private key, and optionally an X25519
// sealing key. On disk it is one PEM file of mode 0600 holding, in order,
// the CA certificate, the node certificate, the PKCS #8 key and the
// optional "KILN SEAL KEY" block.
type Bundle struct {
	CA      *x509.Certificate
	Cert    *x509.Certificate
	Key     crypto.Signer
	SealKey []byte // optional X25519 private key, SealKeySize bytes
}

// Fingerprint returns the lowercase hex SHA-256 of the certificate's
// SubjectPublicKeyInfo: it names the key, and stays the same if the key is
// certified again.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// Fingerprint returns the fingerprint of the bundle's node certificate.
func (b *Bundle) Fingerprint() string { return Fingerprint(b.Cert) }

// TLSCertificate returns the node certificate and key for a tls.Config.
func (b *Bundle) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{b.Cert.Raw}, PrivateKey: b.Key, Leaf: b.Cert}
}

// SealPublicKey returns the X25519 public key matching SealKey, or nil when
// the bundle has no sealing key.
func (b *Bundle) SealPublicKey() []byte {
	if len(b.SealKey) == 0 {
		return nil
	}
	k, err := ecdh.X25519().NewPrivateKey(b.SealKey)
	if err != nil {
		return nil
	}
	return k.PublicKey().Bytes()
}

// Encode returns the PEM encoding of the bundle.
func (b *Bundle) Encode() ([]byte, error) {
	if b.CA == nil || b.Cert == nil || b.Key == nil {
		return nil, errors.New("certs: incomplete bundle")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(b.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: marshal key: %w", err)
	}
	out := encodeCert(b.CA)
	out = append(out, encodeCert(b.Cert)...)
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: pemKey, Bytes: keyDER})...)
	if len(b.SealKey) > 0 {
		if len(b.SealKey) != SealKeySize {
			return nil, fmt.Errorf("certs: seal key is %d bytes, want %d", len(b.SealKey), SealKeySize)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: pemSealKey, Bytes: b.SealKey})...)
	}
	return out, nil
}

// WriteBundle writes b to path with mode 0600, atomically: readers see the
// old file or the new one, never a part.
func WriteBundle(path string, b *Bundle) error {
	data, err := b.Encode()
	if err != nil {
		return err
	}
	if err := WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("certs: write bundle: %w", err)
	}
	return nil
}

// ReadBundle reads and checks a bundle written by [WriteBundle]. It refuses
// a file readable by group or others, a node certificate not signed by the
// bundled CA, and a key that does not match the certificate. It does not
// check expiry; TLS does.
func ReadBundle(path string) (*Bundle, error) {
	data, err := readPrivate(path, "bundle")
	if err != nil {
		return nil, err
	}
	b, err := DecodeBundle(data)
	if err != nil {
		return nil, fmt.Errorf("certs: bundle %s: %w", path, err)
	}
	return b, nil
}

// DecodeBundle parses and checks the PEM encoding of a bundle.
func DecodeBundle(data []byte) (*Bundle, error) {
	var b Bundle
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if err := b.addBlock(block, &certs); err != nil {
			return nil, err
		}
	}
	if len(certs) != 2 {
		return nil, fmt.Errorf("has %d certificates, want 2 (CA, then node)", len(certs))
	}
	b.CA, b.Cert = certs[0], certs[1]
	return &b, b.check()
}

func (b *Bundle) addBlock(block *pem.Block, certs *[]*x509.Certificate) error {
	switch block.Type {
	case pemCert:
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("certificate %d: %w", len(*certs)+1, err)
		}
		*certs = append(*certs, c)
	case pemKey:
		if b.Key != nil {
			return errors.New("more than one private key")
		}
		k, err := parseKey(block.Bytes)
		if err != nil {
			return err
		}
		b.Key = k
	case pemSealKey:
		if len(block.Bytes) != SealKeySize {
			return fmt.Errorf("seal key is %d bytes, want %d", len(block.Bytes), SealKeySize)
		}
		b.SealKey = block.Bytes
	default:
		return fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	return nil
}

func (b *Bundle) check() error {
	if b.Key == nil {
		return errors.New("no private key")
	}
	if !b.CA.IsCA {
		return errors.New("first certificate is not a CA")
	}
	if err := b.Cert.CheckSignatureFrom(b.CA); err != nil {
		return fmt.Errorf("node certificate %q is not signed by the bundled CA %q: %w",
			b.Cert.Subject.CommonName, b.CA.Subject.CommonName, err)
	}
	if !publicKeyEqual(b.Key.Public(), b.Cert.PublicKey) {
		return errors.New("private key does not match the node certificate")
	}
	return nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}

func encodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: c.Raw})
}

// readPrivate reads a file holding a private key, refusing it when group or
// others may read it.
func readPrivate(path, what string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", what, err)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("certs: %s %s is readable by others (mode %04o); chmod 600 %s", what, path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", what, err)
	}
	return data, nil
}

// WriteFileAtomic writes data to a temporary file next to path, sets perm,
// syncs and renames it over path.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
