package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
)

// OIDSealKey identifies the certificate extension that carries a slave's
// X25519 sealing public key: 2.25.1872809083.1, a private arc under the UUID arc
// of ITU-T X.667, which needs no registration. The number after 2.25 is a
// fixed random value below 2^31, because Go's certificate parser refuses
// larger arcs (a full 128-bit UUID arc would not parse); a cluster with a
// registered enterprise number may move the extension there. The extension
// is non-critical; its value is a DER OCTET STRING of the 32-byte key.
// Because the CA signs it, the key is bound to the slave's identity: nobody
// without the CA key can pair another sealing key with that slave's name.
var OIDSealKey = asn1.ObjectIdentifier{2, 25, 1872809083, 1}

// ErrNoSealKey is returned by [SealKeyOf] for a certificate without a
// sealing key extension.
var ErrNoSealKey = errors.New("certificate carries no sealing key")

// sealKeyExtension returns the extension that binds pub to a certificate.
func sealKeyExtension(pub []byte) (pkix.Extension, error) {
	val, err := asn1.Marshal(pub)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: OIDSealKey, Value: val}, nil
}

// SealKeyOf returns the X25519 sealing public key in cert's [OIDSealKey]
// extension. It fails with [ErrNoSealKey] when there is none, and with
// another error when the extension is malformed or appears twice.
func SealKeyOf(cert *x509.Certificate) ([]byte, error) {
	var key []byte
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(OIDSealKey) {
			continue
		}
		if key != nil {
			return nil, errors.New("certs: sealing key extension appears twice")
		}
		var k []byte
		rest, err := asn1.Unmarshal(ext.Value, &k)
		if err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("certs: malformed sealing key extension: %v", err)
		}
		if len(k) != SealKeySize {
			return nil, fmt.Errorf("certs: sealing key extension holds %d bytes, want %d", len(k), SealKeySize)
		}
		key = k
	}
	if key == nil {
		return nil, ErrNoSealKey
	}
	return key, nil
}
