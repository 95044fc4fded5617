package client

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/transport/wire"
)

// newHintClient is a client with the checks of a dialled one and no session.
func newHintClient(ca *certs.CA) *Client {
	c := newClient(nil, wire.Welcome{}, nil)
	c.keys, c.ahead = newSlaveKeys(ca.Cert), newAheadSlaves(0)
	return c
}

// TestSlaveCacheRoundTrip: hints saved for a bundle load back, the file is
// 0600 and no temporary file is left; a save of the same hints leaves the
// file alone.
func TestSlaveCacheRoundTrip(t *testing.T) {
	ca, _ := certs.NewCA("ca")
	alice, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "alice", Version: "1"})
	s1, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1"})
	dir := filepath.Join(t.TempDir(), "kiln")
	path := filepath.Join(dir, SlaveCacheName(alice))
	if _, err := LoadSlaveHints(path, alice); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("no file: %v, want not exist", err)
	}
	hints := []SlaveHint{{Language: "c", Slave: "s1", Cert: s1.Cert.Raw}, {Language: "python", Slave: "s1", Cert: s1.Cert.Raw}}
	if err := SaveSlaveHints(path, alice, hints); err != nil {
		t.Fatal(err)
	}
	got, err := LoadSlaveHints(path, alice)
	if err != nil || len(got) != 2 || got[1].Language != "python" || !bytes.Equal(got[0].Cert, s1.Cert.Raw) {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", fi.Mode(), err)
	}
	if err := SaveSlaveHints(path, alice, hints); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(path); !os.SameFile(fi, fi2) { // a rewrite renames a new file over it
		t.Fatal("the same hints were written again")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files in the cache directory, want 1", len(entries))
	}
}

// TestSlaveCacheIgnored: a file too large, corrupt, with too many
// entries, of another version, or written for another cluster CA or
// client certificate is not used (ErrSlaveCache).
func TestSlaveCacheIgnored(t *testing.T) {
	ca, _ := certs.NewCA("ca")
	other, _ := certs.NewCA("other")
	alice, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "alice", Version: "1"})
	bob, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "bob", Version: "1"})
	foreign, _ := other.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "alice", Version: "1"})
	s1, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1"})
	good, err := encodeSlaveCache(alice, []SlaveHint{{Language: "c", Slave: "s1", Cert: s1.Cert.Raw}})
	if err != nil {
		t.Fatal(err)
	}
	ofBob, _ := encodeSlaveCache(bob, []SlaveHint{{Language: "c", Slave: "s1", Cert: s1.Cert.Raw}})
	ofForeign, _ := encodeSlaveCache(foreign, nil)
	many := make([]string, MaxSlaveHints+1)
	for i := range many {
		many[i] = `{"lang":"c","slave":"s1"}`
	}
	tooMany := strings.Replace(string(good), `"slaves":[`, `"slaves":[`+strings.Join(many, ",")+",", 1)
	cases := map[string][]byte{
		"oversized":          append(bytes.Repeat([]byte(" "), MaxSlaveCacheBytes), good...),
		"corrupt":            good[:len(good)/2],
		"not json":           []byte("\x00\x01garbage"),
		"too many entries":   []byte(tooMany),
		"other version":      bytes.Replace(good, []byte(`"version":1`), []byte(`"version":2`), 1),
		"other client":       ofBob,
		"other CA":           ofForeign,
		"fingerprints blank": bytes.Replace(good, []byte(certs.Fingerprint(ca.Cert)), nil, 1),
	}
	dir := t.TempDir()
	for name, data := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(path, data, 0o600)
		if h, err := LoadSlaveHints(path, alice); !errors.Is(err, ErrSlaveCache) {
			t.Errorf("%s: %d hints, %v; want ErrSlaveCache", name, len(h), err)
		}
	}
	path := filepath.Join(dir, "good")
	os.WriteFile(path, good, 0o600)
	if h, err := LoadSlaveHints(path, alice); err != nil || len(h) != 1 {
		t.Fatalf("good file: %d hints, %v", len(h), err)
	}
}

// TestRememberSlavesChecks: a hint is remembered (and wrapped for) only if
// its certificate passes a WrapRequest's checks; every other one is
// dropped with an error, and nothing is wrapped for it.
func TestRememberSlavesChecks(t *testing.T) {
	ca, _ := certs.NewCA("ca")
	other, _ := certs.NewCA("other")
	s1, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1"})
	s2, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s2", Version: "1"})
	foreign, _ := other.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s3", Version: "1"})
	cl, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "s4", Version: "1"})
	noKey, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s5", Version: "1", NoSealKey: true})
	tampered := bytes.Clone(s2.Cert.Raw)
	tampered[len(tampered)/2] ^= 1
	bad := []SlaveHint{
		{Language: "c", Slave: "s2", Cert: tampered},
		{Language: "c", Slave: "s3", Cert: foreign.Cert.Raw},
		{Language: "c", Slave: "s4", Cert: cl.Cert.Raw},
		{Language: "c", Slave: "s5", Cert: noKey.Cert.Raw},
		{Language: "c", Slave: "s6", Cert: s1.Cert.Raw}, // s1's under another name
		{Language: "c", Slave: "s7", Cert: []byte("not a certificate")},
		{Language: "", Slave: "s1", Cert: s1.Cert.Raw},
	}
	c := newHintClient(ca)
	errs := c.RememberSlaves(append([]SlaveHint{{Language: "c", Slave: "s1", Cert: s1.Cert.Raw}}, bad...))
	if len(errs) != len(bad) {
		t.Fatalf("%d errors, want %d: %v", len(errs), len(bad), errs)
	}
	js := newTestJobSeal(t)
	js.language = "c"
	_, wraps, err := js.wrapInSubmit(c.keys, c.ahead)
	if err != nil || len(wraps) != 1 || wraps[0].Slave != "s1" {
		t.Fatalf("wraps %+v, %v; want one for s1", wraps, err)
	}
	if h := c.SlaveHints(); len(h) != 1 || h[0].Slave != "s1" {
		t.Fatalf("hints %+v", h)
	}

	// An expired certificate is refused too.
	c = newHintClient(ca)
	c.keys.now = func() time.Time { return s1.Cert.NotAfter.Add(time.Minute) }
	if errs := c.RememberSlaves([]SlaveHint{{Language: "c", Slave: "s1", Cert: s1.Cert.Raw}}); len(errs) != 1 || len(c.SlaveHints()) != 0 {
		t.Fatalf("expired: %v, hints %+v", errs, c.SlaveHints())
	}
}

// TestRememberSlavesBound: hints past DefaultSealAhead per language are
// dropped, the first ones (the most recent) kept in order.
func TestRememberSlavesBound(t *testing.T) {
	ca, _ := certs.NewCA("ca")
	var hints []SlaveHint
	for i := range DefaultSealAhead + 2 {
		name := "s" + string(rune('a'+i))
		b, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: name, Version: "1"})
		hints = append(hints, SlaveHint{Language: "c", Slave: name, Cert: b.Cert.Raw})
	}
	c := newHintClient(ca)
	if errs := c.RememberSlaves(hints); len(errs) != 0 {
		t.Fatal(errs)
	}
	got := c.SlaveHints()
	if len(got) != DefaultSealAhead || got[0].Slave != "sa" || got[DefaultSealAhead-1].Slave != hints[DefaultSealAhead-1].Slave {
		t.Fatalf("hints %+v", got)
	}
}

// FuzzDecodeSlaveCache: any bytes decode to an error or to at most
// MaxSlaveHints hints, and a decoded file encodes back to the same hints.
func FuzzDecodeSlaveCache(f *testing.F) {
	ca, _ := certs.NewCA("ca")
	alice, _ := ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: "alice", Version: "1"})
	good, _ := encodeSlaveCache(alice, []SlaveHint{{Language: "c", Slave: "s1", Cert: []byte{1, 2, 3}}})
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := decodeSlaveCache(data, alice)
		if err != nil {
			return
		}
		if len(h) > MaxSlaveHints {
			t.Fatalf("%d hints", len(h))
		}
		enc, err := encodeSlaveCache(alice, h)
		if err != nil {
			return // over the size cap once re-encoded
		}
		h2, err := decodeSlaveCache(enc, alice)
		if err != nil || len(h2) != len(h) {
			t.Fatalf("re-decode: %d hints, %v; want %d", len(h2), err, len(h))
		}
	})
}
