package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testCA is a throwaway certificate authority minted in memory per test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kiln test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a leaf certificate for name, valid for 127.0.0.1, usable by
// both TLS clients and servers.
func (ca *testCA) issue(t testing.TB, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serverTLS is a TLS 1.3 server config that requires a client certificate
// signed by ca.
func (ca *testCA) serverTLS(t testing.TB) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{ca.issue(t, "master")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
	}
}

// clientTLS is a TLS 1.3 client config that trusts serverCA and presents a
// certificate signed by ca.
func (ca *testCA) clientTLS(t testing.TB, serverCA *testCA) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{ca.issue(t, "client")},
		RootCAs:      serverCA.pool,
		ServerName:   "127.0.0.1",
	}
}

// testConfig is a Config with short timers for tests.
func testConfig() Config {
	c := DefaultConfig()
	c.KeepAliveInterval = time.Second
	c.ConnectionWriteTimeout = 2 * time.Second
	return c
}

// testCtx returns a context that ends with the test or after d.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// listen returns a loopback TCP listener closed at the end of the test.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connPair returns the two ends of a connection of the given kind: "pipe"
// (net.Pipe), "tcp" (loopback), "tls" (mutual TLS 1.3 over loopback, over
// [WrapTCP] as Dial and the master make it) or "tls-plain" (the same
// without WrapTCP).
func connPair(t testing.TB, kind string) (dialer, acceptor net.Conn) {
	t.Helper()
	if kind == "pipe" {
		a, b := net.Pipe()
		return a, b
	}
	ln := listen(t)
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	if kind == "tcp" {
		return d, a.c
	}
	ca := newCA(t)
	if kind == "tls" {
		d, a.c = WrapTCP(d), WrapTCP(a.c)
	}
	tc := tls.Client(d, ca.clientTLS(t, ca))
	ts := tls.Server(a.c, ca.serverTLS(t))
	errc := make(chan error, 1)
	go func() { errc <- ts.HandshakeContext(testCtx(t, 5*time.Second)) }()
	if err := tc.HandshakeContext(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return tc, ts
}

// sessionPair returns a client and a server session over a connection of
// the given kind, both closed at the end of the test.
func sessionPair(t testing.TB, kind string, ccfg, scfg Config) (client, server *Session) {
	t.Helper()
	dc, ac := connPair(t, kind)
	type result struct {
		s   *Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := Server(testCtx(t, 5*time.Second), ac, scfg)
		ch <- result{s, err}
	}()
	c, err := Client(dc, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.s.Close() })
	return c, r.s
}

// kinds are the connections every session test runs over.
var kinds = []string{"pipe", "tcp", "tls", "tls-plain"}
