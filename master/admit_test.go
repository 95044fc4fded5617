package master_test

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

func TestAdmitGoodPeers(t *testing.T) {
	c := newCluster(t)
	if _, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, ""); err != nil {
		t.Fatalf("client: %v", err)
	}
	if _, err := c.dial(c.issue(certs.RoleAdmin, "root", "1.0"), false, ""); err != nil {
		t.Fatalf("admin: %v", err)
	}
	if _, err := c.dial(c.issue(certs.RoleSlave, "s1", "1.0"), true, ""); err != nil {
		t.Fatalf("slave: %v", err)
	}
	c.waitLog("peer connected", "peer=s1")
}

// TestRefusals drives every registry and hello check through real TLS and
// asserts the stable code, the user's one-line message and the master's log.
func TestRefusals(t *testing.T) {
	c := newCluster(t)
	unknown, err := c.ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "stranger", Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	revoked := c.issue(certs.RoleClient, "mallory", "1.0")
	if _, err := c.reg.RevokeName("mallory", "laptop stolen"); err != nil {
		t.Fatal(err)
	}
	old := c.issue(certs.RoleSlave, "old-slave", "0.9")
	if _, err := c.reg.Retire(certs.RoleSlave, "0.9", "security fix in 1.0"); err != nil {
		t.Fatal(err)
	}
	slave := c.issue(certs.RoleSlave, "s1", "1.0")
	client := c.issue(certs.RoleClient, "bob", "1.0")

	cases := []struct {
		name      string
		b         *certs.Bundle
		slavePort bool
		version   string
		code      string
		message   string
	}{
		{"unknown key", unknown, false, "", wire.CodeUnknownKey, "master refused this key: unknown key"},
		{"revoked key", revoked, false, "", wire.CodeRevokedKey, "master refused this key: revoked"},
		{"retired version", old, true, "", wire.CodeVersionRetired, "master refused this key: version retired"},
		{"slave key on client port", slave, false, "", wire.CodeRoleMismatch, "master refused this key: wrong role for this port"},
		{"client key on slave port", client, true, "", wire.CodeRoleMismatch, "master refused this key: wrong role for this port"},
		{"hello version differs", client, false, "2.0", wire.CodeBadHello, "master refused: bad hello"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.dial(tc.b, tc.slavePort, tc.version)
			if got := refusedCode(err); got != tc.code {
				t.Fatalf("refusal code %q (err %v), want %q", got, err, tc.code)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tc.message) || strings.Contains(msg, "\n") {
				t.Fatalf("message %q, want one line starting %q", msg, tc.message)
			}
			id, _ := auth.IdentityOf(tc.b.Cert)
			c.waitLog("peer refused", "peer="+id.Name, "code="+tc.code)
		})
	}
	// The master keeps serving everyone else.
	if _, err := c.dial(client, false, ""); err != nil {
		t.Fatalf("good client after refusals: %v", err)
	}
}

// TestTLSRefusals: failures the master answers with a TLS alert.
func TestTLSRefusals(t *testing.T) {
	c := newCluster(t)
	otherCA, _ := certs.NewCA("other-ca")
	foreign, err := otherCA.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "foreign", Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	foreign.CA = c.ca.Cert // trusts our master, presents a cert from another CA
	c.register(foreign)
	expired, err := c.ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "expired", Version: "1.0",
		NotBefore: time.Now().Add(-48 * time.Hour), Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c.register(expired)
	good := c.issue(certs.RoleClient, "good", "1.0")

	dialTLS := func(cfg *tls.Config) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := transport.Dial(ctx, c.srv.ClientAddr(), cfg, transport.Config{})
		if err != nil {
			return err
		}
		defer s.Close()
		_, err = transport.Hello(ctx, s, wire.Hello{Role: "client", Name: "x", Version: "1.0"})
		return err
	}
	// Go's client sends no certificate the master's CA list does not name:
	// present the foreign one anyway, as an attacker would.
	foreignCfg := auth.ClientConfig(foreign, "127.0.0.1")
	foreignCert := foreign.TLSCertificate()
	foreignCfg.Certificates = nil
	foreignCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignCert, nil }
	noCert := auth.ClientConfig(good, "127.0.0.1")
	noCert.Certificates = nil
	tls12 := auth.ClientConfig(good, "127.0.0.1")
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	// Each refusal for its own reason: the TLS alert the client reads, and
	// the cause in the master's log.
	cases := []struct {
		name        string
		cfg         *tls.Config
		alert, logs string
	}{
		{"certificate from another CA", foreignCfg, "unknown certificate authority", "certificate signed by unknown authority"},
		{"no client certificate", noCert, "certificate required", "client didn't provide a certificate"},
		{"TLS 1.2", tls12, "protocol version not supported", "client offered only unsupported versions: [303]"},
		{"expired certificate", auth.ClientConfig(expired, "127.0.0.1"), "expired certificate", "certificate has expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := dialTLS(tc.cfg)
			var he *transport.HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("got %T %v, want a TLS handshake error", err, err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tc.alert) {
				t.Fatalf("error %q: want one line naming %q", msg, tc.alert)
			}
			c.waitLog("TLS handshake refused", tc.logs)
		})
	}
	if _, err := c.dial(good, false, ""); err != nil {
		t.Fatalf("good client after TLS refusals: %v", err)
	}
}

// TestGarbage: random bytes, an HTTP request and a 4 GiB frame announcement
// are refused without hurting the master.
func TestGarbage(t *testing.T) {
	c := newCluster(t)
	good := c.issue(certs.RoleClient, "good", "1.0")
	for _, payload := range []string{"\x16\x03\x01\xff\xffgarbage-garbage", "GET / HTTP/1.1\r\nHost: kiln\r\n\r\n"} {
		conn, err := net.Dial("tcp", c.srv.ClientAddr())
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte(payload))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("master kept a garbage connection open (%q)", payload[:8])
		}
	}
	c.waitLog("TLS handshake refused")

	// A valid TLS peer whose first frame announces 4 GiB, then one whose
	// Hello frame holds bytes that are not a message: each gets a Refused
	// and nothing else, above all no Welcome.
	huge := binary.BigEndian.AppendUint32(nil, 0xFFFFFFFF)
	junk := append(binary.BigEndian.AppendUint32(nil, 12), "\xc1\xc1not-msgpack"...)
	for _, frame := range [][]byte{huge, junk} {
		got := garbageFrame(t, c, good, frame)
		if len(got) != 1 || got[0] != wire.MsgRefused {
			t.Fatalf("after a garbage frame the master sent %v, want one Refused and no Welcome", got)
		}
	}
	c.waitLog("bad hello", "peer=good")
	if _, err := c.dial(good, false, ""); err != nil {
		t.Fatalf("good client after garbage: %v", err)
	}
}

// garbageFrame connects with b, writes frame raw on the control stream
// and returns the types of every frame the master sends until it closes;
// the first must decode as a bad_hello Refused.
func garbageFrame(t *testing.T, c *cluster, b *certs.Bundle, frame []byte) []wire.MsgType {
	t.Helper()
	conn, err := tls.Dial("tcp", c.srv.ClientAddr(), auth.ClientConfig(b, "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mux, err := yamux.Client(conn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	st, err := mux.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	st.Write(frame)
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	var types []wire.MsgType
	for {
		env, err := wire.ReadFrame(st, wire.MaxFrame)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("master kept the stream open after a garbage frame (sent %v)", types)
			}
			break
		}
		if len(types) == 0 {
			var r wire.Refused
			if err := wire.Decode(env, &r); err != nil || env.Type != wire.MsgRefused || r.Code != wire.CodeBadHello {
				t.Fatalf("got %v %v %+v, want a bad_hello Refused", env.Type, err, r)
			}
		}
		types = append(types, env.Type)
	}
	return types
}

// TestLiveRevocation: revoking a key or retiring a version in the registry
// file (as `kiln certs revoke` does from another process) disconnects the
// live peer within one second.
func TestLiveRevocation(t *testing.T) {
	c := newCluster(t)
	client := c.issue(certs.RoleClient, "carol", "1.0")
	slave := c.issue(certs.RoleSlave, "s-old", "0.9")
	cs, err := c.dial(client, false, "")
	if err != nil {
		t.Fatal(err)
	}
	ss, err := c.dial(slave, true, "")
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.OpenRegistry(c.reg.Path())
	if err != nil {
		t.Fatal(err)
	}
	// The promise is the master's latency: from the moment the registry
	// file holds the change (act has returned: the other process's write
	// and fsync are its own time, not the master's) to the moment the
	// master decides to disconnect, read off its own log line's
	// timestamp, so that how late this test's goroutine wakes up on a
	// loaded machine does not count. The bound itself stays 1 s.
	check := func(s *transport.Session, name, code string, act func()) {
		t.Helper()
		act()
		start := time.Now()
		env := recvUntil(t, s, wire.MsgRefused)
		var r wire.Refused
		if err := wire.Decode(env, &r); err != nil {
			t.Fatal(err)
		}
		if r.Code != code {
			t.Fatalf("refused with %q, want %q", r.Code, code)
		}
		if d := c.logTime(t, "registry change: disconnecting peer", "peer="+name, "code="+code).Sub(start); d > time.Second {
			t.Fatalf("disconnected %v after the registry changed, want within 1 s", d)
		}
		select {
		case <-s.Done():
		case <-time.After(2 * time.Second):
			t.Fatal("session still open after the refusal")
		}
	}
	check(cs, "carol", wire.CodeRevokedKey, func() {
		if _, err := other.RevokeName("carol", "left the team"); err != nil {
			t.Fatal(err)
		}
	})
	check(ss, "s-old", wire.CodeVersionRetired, func() {
		if _, err := other.Retire(certs.RoleSlave, "0.9", "old"); err != nil {
			t.Fatal(err)
		}
	})
}

// logTime is the time stamp of the master's first log line holding every
// fragment (which must be logged already).
func (c *cluster) logTime(t *testing.T, fragments ...string) time.Time {
	t.Helper()
	c.waitLog(fragments...)
	for _, line := range strings.Split(c.logs.String(), "\n") {
		if !containsAll(line, fragments) {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("log line without a time stamp: %q: %v", line, err)
		}
		return at
	}
	t.Fatalf("master never logged a line with %q", fragments)
	return time.Time{}
}
