package master_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// dialAs connects with b's certificate and says hello, a Hello that may
// lie about who the peer is; it returns the refusal, if any.
func (c *cluster) dialAs(b *certs.Bundle, slavePort bool, hello wire.Hello) error {
	c.t.Helper()
	addr := c.srv.ClientAddr()
	if slavePort {
		addr = c.srv.SlaveAddr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := transport.Dial(ctx, addr, auth.ClientConfig(b, "127.0.0.1"), transport.Config{})
	if err != nil {
		c.t.Fatal(err)
	}
	defer s.Close()
	_, err = transport.Hello(ctx, s, hello)
	return err
}

// TestHelloMustMatchCertificate: a peer cannot claim in its Hello another
// name or role than its certificate's (another slave's jobs, admin rights).
func TestHelloMustMatchCertificate(t *testing.T) {
	c := newCluster(t)
	slave := c.issue(certs.RoleSlave, "s1", "1.0")
	c.issue(certs.RoleSlave, "s2", "1.0")
	client := c.issue(certs.RoleClient, "alice", "1.0")
	for _, tc := range []struct {
		name      string
		b         *certs.Bundle
		slavePort bool
		hello     wire.Hello
		code, why string
	}{
		{"another slave's name", slave, true, wire.Hello{Role: certs.RoleSlave, Name: "s2", Version: "1.0"},
			wire.CodeBadHello, `hello says name "s2" but the certificate says "s1"`},
		{"admin role with a client key", client, false, wire.Hello{Role: certs.RoleAdmin, Name: "alice", Version: "1.0"},
			wire.CodeRoleMismatch, `hello says role "admin" but the certificate says "client"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.dialAs(tc.b, tc.slavePort, tc.hello)
			if got := refusedCode(err); got != tc.code {
				t.Fatalf("refusal %q (err %v), want %q", got, err, tc.code)
			}
			c.waitLog("peer refused", "code="+tc.code, strings.ReplaceAll(tc.why, `"`, `\"`))
		})
	}
	if n := len(c.srv.Slaves()); n != 0 {
		t.Fatalf("%d slave(s) connected after the refusals", n)
	}
}

// TestRegisterSealKeyMustMatchCertificate: a slave announcing a sealing key
// other than the one its certificate carries is refused and never
// registered, so no sealed job is wrapped for a key the CA did not bind.
func TestRegisterSealKeyMustMatchCertificate(t *testing.T) {
	c := newCluster(t)
	b := c.issue(certs.RoleSlave, "s1", "1.0")
	if len(b.SealPublicKey()) == 0 {
		t.Fatal("the test PKI issued a slave bundle without a sealing key")
	}
	s, err := c.dial(b, true, "")
	if err != nil {
		t.Fatal(err)
	}
	forged := make([]byte, len(b.SealPublicKey()))
	rand.Read(forged)
	s.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}, SealKey: forged})
	r := refusal(t, s)
	if r.Code != wire.CodeBadRequest || !strings.Contains(r.Reason, "not the one in the slave's certificate") {
		t.Fatalf("got %+v, want bad_request: the sealing key is not the certificate's", r)
	}
	if strings.Contains(c.logs.String(), "slave registered") {
		t.Fatal("the slave was registered before being refused")
	}
}

// TestHeldBytesPerClient: one client key cannot hold more uploaded bytes
// on the master than its share (JobBudget.HeldBytesPerClient), even with
// the master's whole budget free; another key still can.
func TestHeldBytesPerClient(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) {
		cfg.MaxHeldBytes = 1 << 20
		cfg.Budget.Jobs.HeldBytesPerClient = 2500
	})
	fs := c.fakeSlave("s1", 1, true, "python")
	alice, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := bytes.Repeat([]byte("#"), 1000)
	if _, e := submit(t, alice, 1, "a.py", src); e != nil { // running: 1000 held
		t.Fatal(e)
	}
	<-fs.jobs
	if _, e := submit(t, alice, 2, "b.py", src); e != nil { // queued: 2000 held
		t.Fatal(e)
	}
	_, e := submit(t, alice, 3, "c.py", src) // would be 3000
	if e == nil || e.Code != wire.CodeBusy || !strings.Contains(e.Message, "this key holds") {
		t.Fatalf("third job of one key: got %+v, want busy for the key's share", e)
	}
	bob, err := c.dial(c.issue(certs.RoleClient, "bob", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, e := submit(t, bob, 1, "d.py", src); e != nil {
		t.Fatalf("another key's job: %+v", e)
	}
}
