package certs

import (
	"crypto/x509"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func issue(t *testing.T, ca *CA, req IssueRequest) *Bundle {
	t.Helper()
	b, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCASaveLoad(t *testing.T) {
	ca := newCA(t)
	dir := filepath.Join(t.TempDir(), "cluster")
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	p := Paths(dir)
	for path, want := range map[string]os.FileMode{p.CACert: 0o644, p.CAKey: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, fi.Mode().Perm(), want)
		}
	}
	got, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cert.Equal(ca.Cert) || got.Key == nil {
		t.Fatal("loaded CA differs")
	}
	if !ca.Cert.IsCA || ca.Cert.NotAfter.Sub(ca.Cert.NotBefore) < 9*365*24*time.Hour {
		t.Errorf("CA: IsCA=%v validity %s", ca.Cert.IsCA, ca.Cert.NotAfter.Sub(ca.Cert.NotBefore))
	}
	if err := os.Chmod(p.CAKey, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadCA with a loose key: %v", err)
	}
}

func TestLoadCAMismatchedKey(t *testing.T) {
	dir := t.TempDir()
	if err := newCA(t).Save(dir); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := newCA(t).Save(other); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(Paths(other).CAKey)
	if err := os.WriteFile(Paths(dir).CAKey, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("got %v", err)
	}
}

func TestIssueRoles(t *testing.T) {
	ca := newCA(t)
	for _, role := range []string{RoleSlave, RoleClient, RoleAdmin, RoleMaster} {
		req := IssueRequest{Role: role, Name: role + "-1", Version: "1.2.3+dev"}
		if role == RoleMaster {
			req.Hosts = []string{"localhost", "127.0.0.1", "::1"}
		}
		b := issue(t, ca, req)
		c := b.Cert
		if c.Subject.CommonName != req.Name {
			t.Errorf("%s: CN %q", role, c.Subject.CommonName)
		}
		if len(c.URIs) != 1 || c.URIs[0].String() != "kiln://"+role+"/"+role+"-1?version=1.2.3+dev" {
			t.Errorf("%s: URIs %v", role, c.URIs)
		}
		gotRole, name, version, err := ParseNodeURI(c.URIs[0])
		if err != nil || gotRole != role || name != req.Name || version != req.Version {
			t.Errorf("%s: parse = %q %q %q %v", role, gotRole, name, version, err)
		}
		wantEKU := x509.ExtKeyUsageClientAuth
		if role == RoleMaster {
			wantEKU = x509.ExtKeyUsageServerAuth
			if len(c.DNSNames) != 1 || len(c.IPAddresses) != 2 {
				t.Errorf("master SANs: %v %v", c.DNSNames, c.IPAddresses)
			}
		}
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != wantEKU {
			t.Errorf("%s: EKU %v", role, c.ExtKeyUsage)
		}
		if (role == RoleSlave) != (len(b.SealKey) == SealKeySize) || (role == RoleSlave) != (len(b.SealPublicKey()) == 32) {
			t.Errorf("%s: seal key %d bytes", role, len(b.SealKey))
		}
		if err := c.CheckSignatureFrom(ca.Cert); err != nil {
			t.Error(err)
		}
	}
}

func TestIssueRejects(t *testing.T) {
	ca := newCA(t)
	for _, req := range []IssueRequest{
		{Role: "root", Name: "x", Version: "1"},
		{Role: RoleSlave, Name: "", Version: "1"},
		{Role: RoleSlave, Name: "a b", Version: "1"},
		{Role: RoleSlave, Name: "-x", Version: "1"},
		{Role: RoleSlave, Name: "x", Version: ""},
		{Role: RoleSlave, Name: "x", Version: "1?x=2"},
		{Role: RoleSlave, Name: "x", Version: "1", Hosts: []string{"h"}},
		{Role: RoleMaster, Name: "master", Version: "1"},
		{Role: RoleSlave, Name: "x", Version: "1", Validity: 20 * 365 * 24 * time.Hour},
	} {
		if _, err := ca.Issue(req); err == nil {
			t.Errorf("Issue(%+v) succeeded", req)
		}
	}
}

func TestBundleRoundTrip(t *testing.T) {
	ca := newCA(t)
	b := issue(t, ca, IssueRequest{Role: RoleSlave, Name: "slave-1", Version: "0.1.0"})
	path := filepath.Join(t.TempDir(), "slave-1.bundle")
	if err := WriteBundle(path, b); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", fi.Mode(), err)
	}
	got, err := ReadBundle(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CA.Equal(ca.Cert) || !got.Cert.Equal(b.Cert) || string(got.SealKey) != string(b.SealKey) {
		t.Fatal("round trip differs")
	}
	if got.Fingerprint() != b.Fingerprint() || len(b.Fingerprint()) != 64 || strings.ToLower(b.Fingerprint()) != b.Fingerprint() {
		t.Fatalf("fingerprint %q vs %q", got.Fingerprint(), b.Fingerprint())
	}
	tc := got.TLSCertificate()
	if tc.Leaf != got.Cert || len(tc.Certificate) != 1 || tc.PrivateKey == nil {
		t.Fatal("bad tls.Certificate")
	}
	// A client bundle has no seal key block.
	cb := issue(t, ca, IssueRequest{Role: RoleClient, Name: "alice", Version: "0.1.0"})
	if err := WriteBundle(path, cb); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadBundle(path); err != nil || got.SealKey != nil {
		t.Fatalf("client bundle: %v %v", got, err)
	}
}

func TestReadBundleLoosePerms(t *testing.T) {
	ca := newCA(t)
	path := filepath.Join(t.TempDir(), "b")
	if err := WriteBundle(path, issue(t, ca, IssueRequest{Role: RoleClient, Name: "c", Version: "1"})); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadBundle(path)
	want := "bundle " + path + " is readable by others (mode 0644); chmod 600 " + path
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func TestReadBundleWrongCAAndKey(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	b := issue(t, ca, IssueRequest{Role: RoleClient, Name: "c", Version: "1"})
	b2 := issue(t, ca, IssueRequest{Role: RoleClient, Name: "d", Version: "1"})
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		b    *Bundle
		want string
	}{
		"wrongca":  {&Bundle{CA: other.Cert, Cert: b.Cert, Key: b.Key}, "not signed by the bundled CA"},
		"wrongkey": {&Bundle{CA: ca.Cert, Cert: b.Cert, Key: b2.Key}, "does not match"},
		"notca":    {&Bundle{CA: b2.Cert, Cert: b.Cert, Key: b.Key}, "not a CA"},
	} {
		path := filepath.Join(dir, name)
		if err := WriteBundle(path, tc.b); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadBundle(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", name, err, tc.want)
		}
	}
	if _, err := DecodeBundle([]byte("garbage")); err == nil {
		t.Error("garbage decoded")
	}
}

func TestFingerprintStable(t *testing.T) {
	ca := newCA(t)
	b := issue(t, ca, IssueRequest{Role: RoleAdmin, Name: "root", Version: "1"})
	// Certify the same key again: the fingerprint names the key, not the cert.
	tmpl, err := template(IssueRequest{Role: RoleAdmin, Name: "root", Version: "2"})
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(nil, tmpl, ca.Cert, b.Key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := x509.ParseCertificate(der)
	if Fingerprint(c2) != Fingerprint(b.Cert) || Fingerprint(b.Cert) != Fingerprint(b.Cert) {
		t.Fatal("fingerprint changed")
	}
}

func TestParseNodeURIRejects(t *testing.T) {
	for _, s := range []string{
		"https://slave/x?version=1",
		"kiln://slave/x",
		"kiln://slave/x?version=",
		"kiln://slave/x?version=1&y=2",
		"kiln://root/x?version=1",
		"kiln://slave/?version=1",
		"kiln://slave/x/y?version=1",
		"kiln://u@slave/x?version=1",
		"kiln://slave:1/x?version=1",
		"kiln://slave/x?version=1#f",
		"kiln://slave/x%41?version=1",
		"kiln://Slave/x?version=1",
	} {
		u, err := url.Parse(s)
		if err != nil {
			continue
		}
		if _, _, _, err := ParseNodeURI(u); !errors.Is(err, ErrBadIdentity) {
			t.Errorf("ParseNodeURI(%q) = %v", s, err)
		}
	}
}

// FuzzParseNodeURI checks that whatever ParseNodeURI accepts is canonical:
// rebuilding it with NodeURI gives the same string.
func FuzzParseNodeURI(f *testing.F) {
	f.Add("kiln://slave/slave-1?version=0.1.0")
	f.Add("kiln://master/master?version=1.0.0+build.5")
	f.Add("kiln://client/a%2Fb?version=1")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		role, name, version, err := ParseNodeURI(u)
		if err != nil {
			if !errors.Is(err, ErrBadIdentity) {
				t.Fatalf("error does not wrap ErrBadIdentity: %v", err)
			}
			return
		}
		again, err := NodeURI(role, name, version)
		if err != nil || again.String() != u.String() {
			t.Fatalf("%q accepted but rebuilds as %v (%v)", s, again, err)
		}
	})
}
