package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/client"
	"kiln/master"
)

// runSlavesSetup is a sealed cluster with one slave, a client bundle file
// and the environment of a kiln run whose cache directory is the test's.
func runSlavesSetup(t *testing.T) (c *sealedCluster, env map[string]string, bundle *certs.Bundle, cacheFile string) {
	t.Helper()
	c = newSealedCluster(t)
	c.startSlave("s1", nil)
	return runSlavesSetupOn(t, c)
}

// runSlavesSetupOn is runSlavesSetup on a cluster of the caller's.
func runSlavesSetupOn(t *testing.T, c *sealedCluster) (_ *sealedCluster, env map[string]string, bundle *certs.Bundle, cacheFile string) {
	t.Helper()
	bundle = c.issue(certs.RoleClient, "carol")
	dir := t.TempDir()
	bf := filepath.Join(dir, "carol.bundle")
	if err := certs.WriteBundle(bf, bundle); err != nil {
		t.Fatal(err)
	}
	env = map[string]string{"KILN_BUNDLE": bf, "KILN_MASTER": c.srv.ClientAddr(), "XDG_CACHE_HOME": filepath.Join(dir, "cache")}
	return c, env, bundle, filepath.Join(dir, "cache", "kiln", client.SlaveCacheName(bundle))
}

// kilnRunSealed runs `kiln run` of a Python program in-process and
// reports whether the master sent it a WrapRequest. The output must be
// right whatever the cache held.
func kilnRunSealed(t *testing.T, c *sealedCluster, env map[string]string, args ...string) (asked bool, stderr string) {
	t.Helper()
	prog := filepath.Join(t.TempDir(), "p.py")
	os.WriteFile(prog, []byte("print('sealed ' + 'run')\n"), 0o600)
	c.rec.reset()
	code, stdout, stderr := runCLI(context.Background(), t, env, append([]string{"run", prog}, args...)...)
	if code != 0 || stdout != "sealed run\n" {
		t.Fatalf("kiln run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	return c.rec.contains("slave_cert"), stderr
}

// TestRunRemembersSlaves: a one-shot kiln run pays the WrapRequest round
// trip once; the next run, a new session, wraps its key in the Submit for
// the slave the cache file names (the master sends no WrapRequest: no
// slave certificate crosses it) and its output is right. --no-slave-cache
// and KILN_NO_SLAVE_CACHE turn it off.
func TestRunRemembersSlaves(t *testing.T) {
	c, env, _, cacheFile := runSlavesSetup(t)
	if asked, _ := kilnRunSealed(t, c, env); !asked {
		t.Fatal("the first run's key was not asked for")
	}
	if fi, err := os.Stat(cacheFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v", err)
	}
	if asked, stderr := kilnRunSealed(t, c, env); asked || !c.rec.contains("wrap_nonce") || stderr != "" {
		t.Fatalf("second run: WrapRequest %v, wrap_nonce %v, stderr %q; want the Submit's wrap used", asked, c.rec.contains("wrap_nonce"), stderr)
	}
	if asked, _ := kilnRunSealed(t, c, env, "--no-slave-cache"); !asked {
		t.Fatal("--no-slave-cache: no WrapRequest, the cache was used")
	}
	env["KILN_NO_SLAVE_CACHE"] = "true"
	if asked, _ := kilnRunSealed(t, c, env); !asked {
		t.Fatal("KILN_NO_SLAVE_CACHE: no WrapRequest, the cache was used")
	}
}

// TestRunSlaveCacheIgnored: a cache file tampered with, corrupt, of a
// foreign CA or client, or oversized, is ignored with a warning: the run
// succeeds through a WrapRequest, wraps for no slave that fails the
// checks, and leaves a good file for the next run.
func TestRunSlaveCacheIgnored(t *testing.T) {
	c, env, bundle, cacheFile := runSlavesSetup(t)
	kilnRunSealed(t, c, env)
	good, err := os.ReadFile(cacheFile)
	if err != nil {
		t.Fatal(err)
	}
	other := authtest.New(t)
	alien := other.Issue(certs.RoleClient, "carol", "1.0")
	alienSlave := other.Issue(certs.RoleSlave, "s1", "1.0") // same name, foreign CA
	s1, _ := client.LoadSlaveHints(cacheFile, bundle)
	tampered := bytes.Clone(s1[0].Cert)
	tampered[len(tampered)/2] ^= 1
	withCert := func(der []byte) []byte {
		b64 := base64.StdEncoding.EncodeToString
		return []byte(strings.Replace(string(good), b64(s1[0].Cert), b64(der), 1))
	}
	cases := map[string]func() []byte{
		"tampered certificate": func() []byte { return withCert(tampered) },
		"foreign-CA slave":     func() []byte { return withCert(alienSlave.Cert.Raw) },
		"corrupt":              func() []byte { return good[:len(good)-7] },
		"oversized":            func() []byte { return append(bytes.Repeat([]byte(" "), client.MaxSlaveCacheBytes), good...) },
		"foreign-CA file": func() []byte {
			return bytes.Replace(good, []byte(certs.Fingerprint(bundle.CA)), []byte(certs.Fingerprint(alien.CA)), 1)
		},
		"another client's file": func() []byte {
			return bytes.Replace(good, []byte(bundle.Fingerprint()), []byte(alien.Fingerprint()), 1)
		},
	}
	for name, data := range cases {
		if err := os.WriteFile(cacheFile, data(), 0o600); err != nil {
			t.Fatal(err)
		}
		asked, stderr := kilnRunSealed(t, c, env)
		if !asked || !strings.Contains(stderr, "warning") {
			t.Errorf("%s: WrapRequest %v, stderr %q; want a WrapRequest and a warning", name, asked, stderr)
		}
		if asked, stderr := kilnRunSealed(t, c, env); asked || stderr != "" {
			t.Errorf("%s: the run after: WrapRequest %v, stderr %q; want a good file again", name, asked, stderr)
		}
	}
}

// TestRunSlaveCacheStaleKey: a slave re-issued under the same name has a
// new sealing key, which cannot open a wrap made from its remembered
// certificate. The Submit's wrap names the key it was made for, so the
// master does not use it for the new slave but sends a WrapRequest: the
// run succeeds, and the file then holds the new certificate.
func TestRunSlaveCacheStaleKey(t *testing.T) {
	c := newSealedCluster(t)
	stop := c.startSlave("s1", nil)
	_, env, bundle, cacheFile := runSlavesSetupOn(t, c)
	kilnRunSealed(t, c, env)
	old, err := client.LoadSlaveHints(cacheFile, bundle)
	if err != nil || len(old) != 1 {
		t.Fatalf("cache: %+v, %v", old, err)
	}
	stop()
	deadline := time.Now().Add(10 * time.Second)
	for slices.ContainsFunc(c.srv.Slaves(), func(s master.SlaveInfo) bool { return s.Name == "s1" }) {
		if time.Now().After(deadline) {
			t.Fatal("s1 still connected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.reg.RevokeName("s1", "re-issued"); err != nil {
		t.Fatal(err)
	}
	c.startSlave("s1", nil) // a new bundle: a new sealing key
	if asked, stderr := kilnRunSealed(t, c, env); !asked || !c.rec.contains("wrap_nonce") || stderr != "" {
		t.Fatalf("stale certificate: WrapRequest %v, wrap_nonce %v, stderr %q; want the wrap made and skipped", asked, c.rec.contains("wrap_nonce"), stderr)
	}
	now, err := client.LoadSlaveHints(cacheFile, bundle)
	if err != nil || len(now) != 1 || bytes.Equal(now[0].Cert, old[0].Cert) {
		t.Fatalf("cache after: %d hints, %v; want s1's new certificate only", len(now), err)
	}
	if asked, _ := kilnRunSealed(t, c, env); asked {
		t.Fatal("the run after: a WrapRequest, want the new certificate used")
	}
}
