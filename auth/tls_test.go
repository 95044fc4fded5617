package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kiln/certs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pki is a throwaway cluster minted in memory.
type pki struct {
	ca     *certs.CA
	master *certs.Bundle
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := certs.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca}
	p.master = p.issue(t, certs.IssueRequest{Role: certs.RoleMaster, Name: "master", Version: "1.0.0", Hosts: []string{"localhost", "127.0.0.1", "::1"}})
	return p
}

func (p *pki) issue(t *testing.T, req certs.IssueRequest) *certs.Bundle {
	t.Helper()
	if req.Version == "" {
		req.Version = "1.0.0"
	}
	b, err := p.ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forge signs a hand-made template with the CA, to build certificates that
// Issue refuses to make.
func (p *pki) forge(t *testing.T, tmpl *x509.Certificate) *certs.Bundle {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, &key.PublicKey, p.ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &certs.Bundle{CA: p.ca.Cert, Cert: c, Key: key}
}

type result struct {
	err   error
	state tls.ConnectionState
}

// handshake runs a TLS handshake over loopback TCP and a one-byte exchange
// (so that a client certificate refused by the server shows on the client
// too, as TLS 1.3 finishes the client side first).
func handshake(t *testing.T, server, client *tls.Config) (srv, cli result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		s := tls.Server(conn, server)
		err = s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		done <- result{err: err, state: s.ConnectionState()}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(conn, client)
	err = c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	cli = result{err: err, state: c.ConnectionState()}
	return <-done, cli
}

func TestHandshakeOK(t *testing.T) {
	p := newPKI(t)
	for _, role := range []string{certs.RoleSlave, certs.RoleClient, certs.RoleAdmin} {
		b := p.issue(t, certs.IssueRequest{Role: role, Name: role + "-1"})
		for _, addr := range []string{"127.0.0.1:7400", "localhost", "[::1]:7401"} {
			srv, cli := handshake(t, ServerConfig(p.master), ClientConfig(b, addr))
			if srv.err != nil || cli.err != nil {
				t.Fatalf("%s via %s: server %v, client %v", role, addr, srv.err, cli.err)
			}
			if srv.state.Version != tls.VersionTLS13 {
				t.Errorf("version %x", srv.state.Version)
			}
			got, err := PeerIdentity(srv.state)
			want := Identity{Role: role, Name: role + "-1", Version: "1.0.0", Fingerprint: certs.Fingerprint(b.Cert), NotAfter: b.Cert.NotAfter}
			if err != nil || got != want {
				t.Errorf("server sees %+v %v, want %+v", got, err, want)
			}
			m, err := PeerIdentity(cli.state)
			if err != nil || m.Role != certs.RoleMaster || m.Name != "master" || m.Fingerprint != p.master.Fingerprint() {
				t.Errorf("client sees %+v %v", m, err)
			}
		}
	}
}

func TestHandshakeRefusals(t *testing.T) {
	p := newPKI(t)
	other := newPKI(t)
	slave := p.issue(t, certs.IssueRequest{Role: certs.RoleSlave, Name: "slave-1"})
	past := time.Now().Add(-48 * time.Hour)
	expiredSlave := p.issue(t, certs.IssueRequest{Role: certs.RoleSlave, Name: "old", NotBefore: past, Validity: 24 * time.Hour})
	expiredMaster := p.issue(t, certs.IssueRequest{Role: certs.RoleMaster, Name: "master", Hosts: []string{"127.0.0.1"}, NotBefore: past, Validity: 24 * time.Hour})
	uri := func(s string) []*url.URL { u, _ := url.Parse(s); return []*url.URL{u} }
	// A master-role certificate that is (wrongly) valid for client auth, and
	// a slave-role one valid for server auth: only our role check stops them.
	masterAsClient := p.forge(t, &x509.Certificate{Subject: pkix.Name{CommonName: "master"}, URIs: uri("kiln://master/master?version=1.0.0"),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	slaveAsServer := p.forge(t, &x509.Certificate{Subject: pkix.Name{CommonName: "slave-1"}, URIs: uri("kiln://slave/slave-1?version=1.0.0"),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	noURI := p.forge(t, &x509.Certificate{Subject: pkix.Name{CommonName: "plain"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	tls12 := ClientConfig(slave, "127.0.0.1")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	// A fake master with the right certificate that speaks only TLS 1.2:
	// the node must not offer 1.2, so the master finds no common version.
	master12 := ServerConfig(p.master)
	master12.MinVersion, master12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	// A client whose own certificate is from another CA, but that trusts
	// this cluster's master.
	foreign := ClientConfig(other.issue(t, certs.IssueRequest{Role: certs.RoleSlave, Name: "x"}), "127.0.0.1")
	foreign.RootCAs = p.ca.Pool()
	noCert := ClientConfig(slave, "127.0.0.1")
	noCert.Certificates = nil

	isUnknownAuthority := func(err error) bool { return errors.As(err, new(x509.UnknownAuthorityError)) }
	isReason := func(r x509.InvalidReason) func(error) bool {
		return func(err error) bool {
			var ci x509.CertificateInvalidError
			return errors.As(err, &ci) && ci.Reason == r
		}
	}
	contains := func(s string) func(error) bool {
		return func(err error) bool { return strings.Contains(err.Error(), s) }
	}
	is := func(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }
	isHostname := func(err error) bool { return errors.As(err, new(x509.HostnameError)) }

	for _, tc := range []struct {
		name           string
		server, client *tls.Config
		side           string // which side must report the cause
		match          func(error) bool
	}{
		{"client from another CA", ServerConfig(p.master), foreign, "server", isUnknownAuthority},
		{"master from another CA", ServerConfig(other.master), ClientConfig(slave, "127.0.0.1"), "client", isUnknownAuthority},
		{"no client certificate", ServerConfig(p.master), noCert, "server", contains("didn't provide a certificate")},
		{"client limited to TLS 1.2", ServerConfig(p.master), tls12, "server", contains("unsupported versions")},
		{"master limited to TLS 1.2", master12, ClientConfig(slave, "127.0.0.1"), "server", contains("client offered only unsupported versions: [304]")},
		{"expired client", ServerConfig(p.master), ClientConfig(expiredSlave, "127.0.0.1"), "server", isReason(x509.Expired)},
		{"expired master", ServerConfig(expiredMaster), ClientConfig(slave, "127.0.0.1"), "client", isReason(x509.Expired)},
		{"wrong server hostname", ServerConfig(p.master), ClientConfig(slave, "kiln.example:7400"), "client", isHostname},
		{"master cert as client", ServerConfig(p.master), ClientConfig(p.master, "127.0.0.1"), "server", isReason(x509.IncompatibleUsage)},
		{"master role as client", ServerConfig(p.master), ClientConfig(masterAsClient, "127.0.0.1"), "server", is(ErrWrongRole)},
		{"client cert as server", ServerConfig(slave), ClientConfig(slave, "127.0.0.1"), "client", func(err error) bool { return isHostname(err) || isReason(x509.IncompatibleUsage)(err) }},
		{"slave role as server", ServerConfig(slaveAsServer), ClientConfig(slave, "127.0.0.1"), "client", is(ErrWrongRole)},
		{"client cert without identity", ServerConfig(p.master), ClientConfig(noURI, "127.0.0.1"), "server", is(ErrNotKiln)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := handshake(t, tc.server, tc.client)
			if srv.err == nil || cli.err == nil {
				t.Fatalf("handshake succeeded: server %v, client %v", srv.err, cli.err)
			}
			err := srv.err
			if tc.side == "client" {
				err = cli.err
			}
			if !tc.match(err) {
				t.Fatalf("%s error %q (%T) is not the expected one", tc.side, err, err)
			}
		})
	}
}

func TestIdentityOfErrors(t *testing.T) {
	p := newPKI(t)
	uri := func(ss ...string) []*url.URL {
		var us []*url.URL
		for _, s := range ss {
			u, _ := url.Parse(s)
			us = append(us, u)
		}
		return us
	}
	for name, tmpl := range map[string]*x509.Certificate{
		"none":      {Subject: pkix.Name{CommonName: "a"}, URIs: uri("https://a/")},
		"two":       {Subject: pkix.Name{CommonName: "a"}, URIs: uri("kiln://slave/a?version=1", "kiln://client/a?version=1")},
		"malformed": {Subject: pkix.Name{CommonName: "a"}, URIs: uri("kiln://slave/a")},
		"cn":        {Subject: pkix.Name{CommonName: "b"}, URIs: uri("kiln://slave/a?version=1")},
	} {
		b := p.forge(t, tmpl)
		if _, err := IdentityOf(b.Cert); !errors.Is(err, ErrNotKiln) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := IdentityOf(nil); !errors.Is(err, ErrNotKiln) {
		t.Error(err)
	}
	if _, err := PeerIdentity(tls.ConnectionState{}); !errors.Is(err, ErrNotKiln) {
		t.Error(err)
	}
}

func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{"h:1": "h", "[::1]:7400": "::1", "h": "h", "::1": "::1", "[::1]": "::1", "127.0.0.1:7400": "127.0.0.1"} {
		if got := hostOf(in); got != want {
			t.Errorf("hostOf(%q) = %q, want %q", in, got, want)
		}
	}
}
