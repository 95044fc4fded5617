package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// Default lifetimes.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour // 10 years
	NodeValidity = 365 * 24 * time.Hour      // 1 year, `kiln certs issue --valid 8760h`
	clockSkew    = time.Minute               // NotBefore is backdated by this much
)

// CA is the cluster certificate authority. Key is nil for a CA loaded
// without its key (see [LoadCACert]).
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Option configures [NewCA] and [LoadCA].
type Option func(*options)

type options struct {
	now      func() time.Time
	validity time.Duration
}

func buildOptions(opts []Option) options {
	o := options{now: time.Now, validity: CAValidity}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithClock sets the clock used for NotBefore defaults (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithValidity sets the CA lifetime (default [CAValidity]).
func WithValidity(d time.Duration) Option { return func(o *options) { o.validity = d } }

// NewCA creates a self-signed ECDSA P-256 cluster CA named name.
func NewCA(name string, opts ...Option) (*CA, error) {
	o := buildOptions(opts)
	if name == "" {
		return nil, errors.New("certs: CA name is empty")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Kiln"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(o.validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadCA reads dir/ca.crt and dir/ca.key. It refuses a key file readable by
// group or others and a key that does not match the certificate.
func LoadCA(dir string) (*CA, error) {
	p := Paths(dir)
	ca, err := LoadCACert(dir)
	if err != nil {
		return nil, err
	}
	data, err := readPrivate(p.CAKey, "CA key")
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemKey {
		return nil, fmt.Errorf("certs: %s: no %q PEM block", p.CAKey, pemKey)
	}
	key, err := parseKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", p.CAKey, err)
	}
	if !publicKeyEqual(key.Public(), ca.Cert.PublicKey) {
		return nil, fmt.Errorf("certs: %s does not match %s", p.CAKey, p.CACert)
	}
	ca.Key = key
	return ca, nil
}

// LoadCACert reads dir/ca.crt only; the returned CA cannot issue.
func LoadCACert(dir string) (*CA, error) {
	p := Paths(dir)
	data, err := os.ReadFile(p.CACert)
	if err != nil {
		return nil, fmt.Errorf("certs: read CA certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemCert {
		return nil, fmt.Errorf("certs: %s: no %q PEM block", p.CACert, pemCert)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", p.CACert, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: %s is not a CA certificate", p.CACert)
	}
	return &CA{Cert: cert}, nil
}

// Save writes dir/ca.crt (0644) and dir/ca.key (0600), creating dir (0700)
// if needed. Each file is replaced atomically; existing files are
// overwritten, so callers decide whether that is wanted.
func (ca *CA) Save(dir string) error {
	if ca.Key == nil {
		return errors.New("certs: save CA: no private key")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: save CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("certs: save CA: marshal key: %w", err)
	}
	p := Paths(dir)
	if err := WriteFileAtomic(p.CAKey, pem.EncodeToMemory(&pem.Block{Type: pemKey, Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("certs: save CA: %w", err)
	}
	if err := WriteFileAtomic(p.CACert, encodeCert(ca.Cert), 0o644); err != nil {
		return fmt.Errorf("certs: save CA: %w", err)
	}
	return nil
}

// Pool returns a certificate pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func keyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}
