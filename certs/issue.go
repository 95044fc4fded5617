package certs

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// IssueRequest describes a node certificate to issue.
type IssueRequest struct {
	Role    string // RoleMaster, RoleSlave, RoleClient or RoleAdmin
	Name    string // node name, also the subject common name
	Version string // software version the node runs
	// Hosts are the DNS names and IP addresses of the master (RoleMaster
	// only, at least one).
	Hosts []string
	// Validity is the certificate lifetime from NotBefore; zero means
	// [NodeValidity].
	Validity time.Duration
	// NotBefore is the start of validity; zero means now, backdated by one
	// minute to tolerate clock skew.
	NotBefore time.Time
	// NoSealKey skips the X25519 sealing key that slave bundles get by default.
	NoSealKey bool
}

// Issue creates a fresh ECDSA P-256 key and a certificate for req, signed by
// the CA. Slave bundles also get a fresh X25519 sealing key unless
// req.NoSealKey is set; its public half goes into the certificate (see
// [SealKeyOf]), so the CA's signature binds it to the slave. Master certificates are for server authentication
// and carry req.Hosts as DNS and IP SANs; all others are for client
// authentication only.
func (ca *CA) Issue(req IssueRequest) (*Bundle, error) {
	if ca.Key == nil {
		return nil, errors.New("certs: issue: the CA has no private key")
	}
	tmpl, err := template(req)
	if err != nil {
		return nil, fmt.Errorf("certs: issue %s %q: %w", req.Role, req.Name, err)
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("certs: issue %s %q: validity ends %s, after the CA expires (%s)",
			req.Role, req.Name, tmpl.NotAfter.Format(time.DateOnly), ca.Cert.NotAfter.Format(time.DateOnly))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generate key: %w", err)
	}
	var sealKey *ecdh.PrivateKey
	if req.Role == RoleSlave && !req.NoSealKey {
		if sealKey, err = ecdh.X25519().GenerateKey(rand.Reader); err != nil {
			return nil, fmt.Errorf("certs: generate seal key: %w", err)
		}
		ext, err := sealKeyExtension(sealKey.PublicKey().Bytes())
		if err != nil {
			return nil, fmt.Errorf("certs: seal key extension: %w", err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, ext)
	}
	tmpl.SubjectKeyId = keyID(&key.PublicKey)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: sign certificate for %q: %w", req.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse certificate: %w", err)
	}
	b := &Bundle{CA: ca.Cert, Cert: cert, Key: key}
	if sealKey != nil {
		b.SealKey = sealKey.Bytes()
	}
	return b, nil
}

// template validates req and returns the certificate template, without key.
func template(req IssueRequest) (*x509.Certificate, error) {
	uri, err := NodeURI(req.Role, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	validity := req.Validity
	if validity == 0 {
		validity = NodeValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("negative validity %s", validity)
	}
	notBefore := req.NotBefore
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-clockSkew)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.Name, Organization: []string{"Kiln"}, OrganizationalUnit: []string{req.Role}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
	}
	if req.Role != RoleMaster {
		if len(req.Hosts) > 0 {
			return nil, errors.New("hosts are only for the master certificate")
		}
		return tmpl, nil
	}
	if len(req.Hosts) == 0 {
		return nil, errors.New("the master certificate needs at least one host name or IP")
	}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return tmpl, nil
}
