package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/auth"
	"kiln/certs"
)

// certsCLI runs `kiln certs args...` in-process.
func certsCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	code = run(context.Background(), e, append([]string{"certs"}, args...))
	return code, out.String(), errb.String()
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := certsCLI(t, args...)
	if code != 0 {
		t.Fatalf("kiln certs %s: exit %d\n%s", strings.Join(args, " "), code, errs)
	}
	return out
}

func TestCertsCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	out := mustCLI(t, "init", "--dir", dir, "--master-host", "kiln.test,10.0.0.1", "--master-host", "127.0.0.1")
	if !strings.Contains(out, "master.bundle") {
		t.Errorf("init output:\n%s", out)
	}
	mb, err := certs.ReadBundle(certs.Paths(dir).MasterBundle)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := auth.IdentityOf(mb.Cert); err != nil || id.Role != certs.RoleMaster || id.Version != version {
		t.Errorf("master identity %+v %v", id, err)
	}
	if len(mb.Cert.DNSNames) != 1 || len(mb.Cert.IPAddresses) != 2 {
		t.Errorf("master SANs %v %v", mb.Cert.DNSNames, mb.Cert.IPAddresses)
	}
	if code, _, errs := certsCLI(t, "init", "--dir", dir); code != 1 || !strings.Contains(errs, "--force") {
		t.Errorf("re-init: exit %d, %q", code, errs)
	}

	fps := map[string]string{}
	for _, n := range []struct{ role, name string }{{"slave", "slave-1"}, {"slave", "slave-2"}, {"client", "alice"}, {"admin", "ops"}} {
		path := filepath.Join(dir, n.name+".bundle")
		out := mustCLI(t, "issue", "--dir", dir, "--role", n.role, "--name", n.name, "--out", path)
		fps[n.name] = strings.TrimSpace(out)
		b, err := certs.ReadBundle(path)
		if err != nil {
			t.Fatal(err)
		}
		if b.Fingerprint() != fps[n.name] {
			t.Errorf("%s: printed %q, bundle %q", n.name, out, b.Fingerprint())
		}
	}
	mustCLI(t, "issue", "--dir", dir, "--role", "slave", "--name", "slave-old", "--version", "0.0.9", "--valid", "1h", "--out", filepath.Join(dir, "old.bundle"))
	if code, _, errs := certsCLI(t, "issue", "--dir", dir, "--role", "slave", "--name", "slave-1", "--out", filepath.Join(dir, "dup.bundle")); code != 1 || !strings.Contains(errs, "already named slave-1") {
		t.Errorf("duplicate name: exit %d, %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(dir, "dup.bundle")); err == nil {
		t.Error("bundle written for a refused key")
	}

	out = mustCLI(t, "list", "--dir", dir)
	for _, want := range []string{"NAME", "FINGERPRINT", "slave-1", "alice", "ops", fps["ops"][:16], "0.0.9"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}

	mustCLI(t, "revoke", "--dir", dir, "slave-1", "--reason", "lost")
	mustCLI(t, "revoke", "--dir", dir, "--fingerprint", fps["alice"][:12])
	out = mustCLI(t, "revoke", "--dir", dir, "--role", "slave", "--version", "0.0.9")
	if !strings.Contains(out, "retired version 0.0.9 of slave keys") {
		t.Errorf("retire output: %q", out)
	}
	if code, _, errs := certsCLI(t, "issue", "--dir", dir, "--role", "slave", "--name", "slave-3", "--version", "0.0.9", "--out", filepath.Join(dir, "s3")); code != 1 || !strings.Contains(errs, "retired") {
		t.Errorf("issue for retired version: exit %d %q", code, errs)
	}

	code, out, _ := certsCLI(t, "list", "--dir", dir, "--json")
	var doc struct {
		Entries []auth.Entry          `json:"entries"`
		Retired []auth.RetiredVersion `json:"retired"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("list --json: %d %q", code, out)
	}
	status := map[string]auth.Status{}
	for _, en := range doc.Entries {
		status[en.Name] = en.Status
	}
	want := map[string]auth.Status{"slave-1": "revoked", "slave-2": "active", "alice": "revoked", "ops": "active", "slave-old": "retired"}
	for k, v := range want {
		if status[k] != v {
			t.Errorf("%s: status %q, want %q", k, status[k], v)
		}
	}
	if len(doc.Retired) != 1 {
		t.Errorf("retired %v", doc.Retired)
	}
	out = mustCLI(t, "list", "--dir", dir)
	if !strings.Contains(out, "Retired versions:") || !strings.Contains(out, "revoked") {
		t.Errorf("list after revocations:\n%s", out)
	}

	// The registry written by the CLI works with the auth checks.
	reg, err := auth.OpenRegistry(certs.Paths(dir).Registry)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := certs.ReadBundle(filepath.Join(dir, "slave-2.bundle"))
	id, _ := auth.IdentityOf(s2.Cert)
	if err := reg.Check(id, version); err != nil {
		t.Error(err)
	}
	s1, _ := certs.ReadBundle(filepath.Join(dir, "slave-1.bundle"))
	id, _ = auth.IdentityOf(s1.Cert)
	if err := reg.Check(id, version); !errors.Is(err, auth.ErrRevoked) {
		t.Error(err)
	}
}

func TestCertsCLIErrors(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "init", "--dir", dir)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "Usage: kiln certs"},
		{[]string{"frob"}, 2, "unknown command"},
		{[]string{"init"}, 2, "--dir is required"},
		{[]string{"init", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"issue", "--dir", dir, "--role", "slave"}, 2, "are required"},
		{[]string{"issue", "--dir", dir, "--role", "master", "--name", "m", "--out", "x"}, 2, "--role must be"},
		{[]string{"issue", "--dir", dir, "--role", "slave", "--name", "a b", "--out", "x"}, 2, "name"},
		{[]string{"issue", "--dir", dir, "--role", "slave", "--name", "a", "--valid", "soon", "--out", "x"}, 2, "invalid value"},
		{[]string{"issue", "--dir", filepath.Join(dir, "none"), "--role", "slave", "--name", "a", "--out", filepath.Join(dir, "a")}, 1, "ca.crt"},
		{[]string{"revoke", "--dir", dir}, 2, "exactly one of"},
		{[]string{"revoke", "--dir", dir, "a", "--fingerprint", "abcdef0123"}, 2, "exactly one of"},
		{[]string{"revoke", "--dir", dir, "--role", "slave"}, 2, "go together"},
		{[]string{"revoke", "--dir", dir, "nobody"}, 1, "no active key named nobody"},
		{[]string{"revoke", "--dir", dir, "--fingerprint", "abc"}, 1, "at least 8"},
		{[]string{"list"}, 2, "--dir is required"},
		{[]string{"list", "--dir", filepath.Join(dir, "none")}, 1, "kiln certs init"},
	} {
		code, _, errs := certsCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("kiln certs %v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
		if tc.code == 1 && strings.Count(strings.TrimSpace(errs), "\n") != 0 {
			t.Errorf("kiln certs %v: error is not one line: %q", tc.args, errs)
		}
	}
}

func TestCertsCLIHelp(t *testing.T) {
	for _, sub := range []string{"init", "issue", "revoke", "list"} {
		code, _, errs := certsCLI(t, sub, "--help")
		if code != 0 || !strings.Contains(errs, "Usage: kiln certs "+sub) || !strings.Contains(errs, "-dir") {
			t.Errorf("%s --help: exit %d\n%s", sub, code, errs)
		}
	}
	if code, out, _ := certsCLI(t, "--help"); code != 0 || !strings.Contains(out, "revoke") {
		t.Errorf("certs --help: %d %q", code, out)
	}
}

func TestCertsInitForce(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "init", "--dir", dir)
	mustCLI(t, "issue", "--dir", dir, "--role", "client", "--name", "c", "--out", filepath.Join(dir, "c.bundle"))
	old, _ := os.ReadFile(certs.Paths(dir).CACert)
	mustCLI(t, "init", "--dir", dir, "--force")
	now, _ := os.ReadFile(certs.Paths(dir).CACert)
	if bytes.Equal(old, now) {
		t.Error("CA not replaced")
	}
	if out := mustCLI(t, "list", "--dir", dir); !strings.Contains(out, "no keys issued yet") {
		t.Errorf("registry not reset:\n%s", out)
	}
	fi, err := os.Stat(certs.Paths(dir).CAKey)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v %v", fi.Mode(), err)
	}
}
