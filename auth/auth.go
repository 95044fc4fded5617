// Package auth decides who may talk to the Kiln master. It owns three
// things:
//
//   - TLS configurations ([ServerConfig], [ClientConfig]): TLS 1.3 only,
//     mutual, trusting only the cluster CA, and checking the role written in
//     the peer's certificate (a master certificate cannot act as a client and
//     the reverse).
//   - Peer identity ([Identity], [IdentityOf], [PeerIdentity]): role, name,
//     version and key fingerprint read from a certificate made by package
//     certs.
//   - The key registry ([Registry]): a JSON file operators can read, listing
//     every issued key with its status, and the retired (role, version)
//     pairs. [Registry.Check] is the admission decision after the TLS
//     handshake; [Registry.Watch] reloads the file when another process (for
//     example `kiln certs revoke`) changes it, so the master can disconnect
//     peers that just lost access ([Registry.Denied]).
//
// # Errors
//
// Check returns errors wrapping one of [ErrUnknownKey], [ErrRevoked],
// [ErrRetired], [ErrVersionMismatch], [ErrRoleMismatch] or [ErrExpired],
// with the peer name in a one-line human message; match them with
// [errors.Is]. The master maps them to the wire refusal codes.
//
// Package auth imports only package certs and the standard library.
package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"kiln/certs"
)

// Identity is who a certificate says its holder is.
type Identity struct {
	Role        string // certs.RoleMaster, RoleSlave, RoleClient or RoleAdmin
	Name        string
	Version     string // software version the key was issued for
	Fingerprint string // certs.Fingerprint of the certificate
	NotAfter    time.Time
}

// String returns "role name (version)".
func (id Identity) String() string {
	return fmt.Sprintf("%s %s (%s)", id.Role, id.Name, id.Version)
}

// ErrNotKiln is wrapped by [IdentityOf] errors for a certificate without a
// valid kiln:// identity.
var ErrNotKiln = errors.New("not a Kiln node certificate")

// IdentityOf reads the identity URI SAN (kiln://role/name?version=v) of
// cert. It fails, wrapping [ErrNotKiln], when there is none, more than one,
// it is malformed, or the common name differs from the name in the URI.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrNotKiln)
	}
	var id Identity
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != certs.URIScheme {
			continue
		}
		found++
		role, name, version, err := certs.ParseNodeURI(u)
		if err != nil {
			return Identity{}, fmt.Errorf("%w: certificate %q: %w", ErrNotKiln, cert.Subject.CommonName, err)
		}
		id = Identity{Role: role, Name: name, Version: version}
	}
	switch {
	case found == 0:
		return Identity{}, fmt.Errorf("%w: certificate %q has no kiln:// URI", ErrNotKiln, cert.Subject.CommonName)
	case found > 1:
		return Identity{}, fmt.Errorf("%w: certificate %q has %d kiln:// URIs", ErrNotKiln, cert.Subject.CommonName, found)
	case cert.Subject.CommonName != id.Name:
		return Identity{}, fmt.Errorf("%w: certificate common name %q differs from its URI name %q", ErrNotKiln, cert.Subject.CommonName, id.Name)
	}
	id.Fingerprint = certs.Fingerprint(cert)
	id.NotAfter = cert.NotAfter
	return id, nil
}

// PeerIdentity returns the identity of the peer's leaf certificate in a
// completed handshake.
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, fmt.Errorf("%w: the peer sent no certificate", ErrNotKiln)
	}
	return IdentityOf(cs.PeerCertificates[0])
}
