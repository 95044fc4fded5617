package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"kiln/certs"
)

// ErrWrongRole is wrapped by handshake errors when the peer's certificate
// carries a role that may not take that side of the connection.
var ErrWrongRole = errors.New("certificate role not allowed here")

// ServerConfig returns the master's TLS configuration: TLS 1.3 only, the
// bundle's certificate, and a required client certificate that must chain
// to the bundle's CA (and no other) and carry role slave, client or admin.
// Which role may use which port is the master's decision after the
// handshake.
func ServerConfig(b *certs.Bundle) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.TLSCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool(b.CA),
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyRole(cs, "client", certs.RoleSlave, certs.RoleClient, certs.RoleAdmin)
		},
	}
}

// ClientConfig returns the TLS configuration of a node dialing the master:
// TLS 1.3 only, the bundle's certificate, trusting only the bundle's CA, and
// requiring a server certificate with role master valid for serverName.
// serverName may be a host or a host:port master address; IP addresses are
// checked against the certificate's IP SANs.
func ClientConfig(b *certs.Bundle, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{b.TLSCertificate()},
		RootCAs:      pool(b.CA),
		ServerName:   hostOf(serverName),
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyRole(cs, "server", certs.RoleMaster)
		},
	}
}

// verifyRole runs after chain verification and refuses a peer whose
// certificate role is not one of allowed.
func verifyRole(cs tls.ConnectionState, side string, allowed ...string) error {
	id, err := PeerIdentity(cs)
	if err != nil {
		return fmt.Errorf("auth: %s certificate: %w", side, err)
	}
	for _, r := range allowed {
		if id.Role == r {
			return nil
		}
	}
	return fmt.Errorf("auth: %w: %s certificate of %s has role %s, want %s",
		ErrWrongRole, side, id.Name, id.Role, strings.Join(allowed, " or "))
}

func pool(ca *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}

// hostOf returns the host part of addr ("h:p", "[::1]:p", "h" or "::1").
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
}
