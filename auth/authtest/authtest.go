// Package authtest mints a cluster PKI for tests: a fresh CA, a master
// bundle for 127.0.0.1, and a key registry in a temporary directory, with
// helpers to issue registered bundles. It is for tests only.
package authtest

import (
	"path/filepath"
	"testing"
	"time"

	"kiln/auth"
	"kiln/certs"
)

// PKI is a throwaway cluster PKI.
type PKI struct {
	t        testing.TB
	Dir      string         // holds registry.json
	CA       *certs.CA      // the cluster CA
	Master   *certs.Bundle  // the master's bundle, for 127.0.0.1
	Registry *auth.Registry // the key registry, empty at first
}

// New makes a CA, a master bundle and an empty registry in t.TempDir().
func New(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := ca.Issue(certs.IssueRequest{Role: certs.RoleMaster, Name: "master", Version: "1.0", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := auth.CreateRegistry(filepath.Join(dir, "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{t: t, Dir: dir, CA: ca, Master: mb, Registry: reg}
}

// Issue mints a bundle and records its key in the registry.
func (p *PKI) Issue(role, name, version string) *certs.Bundle {
	p.t.Helper()
	b, err := p.CA.Issue(certs.IssueRequest{Role: role, Name: name, Version: version})
	if err != nil {
		p.t.Fatal(err)
	}
	p.Register(b)
	return b
}

// Register records the key of b in the registry as active.
func (p *PKI) Register(b *certs.Bundle) {
	p.t.Helper()
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		p.t.Fatal(err)
	}
	err = p.Registry.Add(auth.Entry{Fingerprint: id.Fingerprint, Role: id.Role, Name: id.Name, Version: id.Version,
		Status: auth.StatusActive, Issued: time.Now(), Expires: b.Cert.NotAfter})
	if err != nil {
		p.t.Fatal(err)
	}
}
