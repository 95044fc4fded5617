package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/client"
)

// TestFirstHourMessages runs, as a user would, the mistakes of a first
// hour with Kiln and checks each one's exit code and message: the wrong
// bundle, the wrong port, an expired key, a drained slave, and the result
// line of a failed program.
func TestFirstHourMessages(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	dir, bundle := clientBundle(t)
	ops := filepath.Join(dir, "ops.bundle")
	mustCLI(t, "issue", "--dir", dir, "--role", "admin", "--name", "ops", "--out", ops)
	s1 := filepath.Join(dir, "s1.bundle")
	mustCLI(t, "issue", "--dir", dir, "--role", "slave", "--name", "s1", "--out", s1)
	expired := issueExpired(t, dir, "olga")
	clientAddr, slaveAddr := freeAddr(t), freeAddr(t)
	m := startKiln(t, "master", "master", "--dir", dir, "--client-addr", clientAddr, "--slave-addr", slaveAddr,
		"--local-slots", "1", "--console", "off", "--log-level", "debug")
	m.waitOutput(t, "slave registered", 1)
	src := t.TempDir()
	prog := writeFile(t, src, "a.py", "print(1)\n")
	as := func(b string) map[string]string {
		return map[string]string{"KILN_BUNDLE": b, "KILN_MASTER": clientAddr}
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{"slave bundle", as(s1), []string{"run", prog}, exitRefused,
			s1 + " is a slave bundle (s1); this command needs a client bundle ('kiln certs issue --role client')"},
		{"slave port", map[string]string{"KILN_BUNDLE": bundle, "KILN_MASTER": slaveAddr}, []string{"run", prog}, exitRefused,
			slaveAddr + " is the master's slave port; clients and admins connect to its client port"},
		{"expired key", as(expired), []string{"run", prog}, exitRefused,
			"the key in " + expired + " (client olga) expired on " + time.Now().Add(-24*time.Hour).UTC().Format(time.DateOnly) +
				"; ask the cluster's operator for a new bundle ('kiln certs issue --role client --name olga')"},
		{"runtime error", as(bundle), []string{"run", writeFile(t, src, "fail.py", "import sys\nsys.exit(1)\n")}, 1,
			": runtime_error, exit code 1; wall"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runCLI(t.Context(), t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant it to contain:\n%s", code, tc.code, errs, tc.msg)
			}
		})
	}

	t.Run("slave on the client port", func(t *testing.T) {
		code, out, errs := runCLI(t.Context(), t, nil, "slave", "--bundle", s1, "--master", clientAddr, "--sandbox", "none")
		if want := clientAddr + " is the master's client port; slaves connect to its slave port"; code == 0 || !strings.Contains(errs, want) {
			t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant %q", code, out, errs, want)
		}
	})

	t.Run("master log names an expired peer", func(t *testing.T) {
		b, err := certs.ReadBundle(expired)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if c, err := client.Dial(ctx, client.Config{Bundle: b, Master: clientAddr}); err == nil {
			c.Close()
			t.Fatal("the master accepted an expired key")
		}
		m.waitOutput(t, `msg="TLS handshake refused"`, 1)
		re := regexp.MustCompile(`msg="TLS handshake refused".*claimed_peer=olga role=client .*expired=` +
			b.Cert.NotAfter.UTC().Format(time.DateOnly))
		if !re.MatchString(m.out.String()) {
			t.Fatalf("the master's log does not name the peer and the date:\n%s", m.out.String())
		}
	})

	t.Run("drained slave", func(t *testing.T) {
		// A job holds the only slot, a second waits in the queue; draining
		// the only slave ends the waiting one at once with no_slave.
		sleeper := writeFile(t, src, "sleep.py", "import time\nprint('started', flush=True)\ntime.sleep(3)\n")
		var out, errb syncBuf
		first := make(chan int, 1)
		go func() {
			e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return as(bundle)[k] }}
			first <- run(t.Context(), e, []string{"run", sleeper})
		}()
		defer func() { <-first }()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), "started") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		type result struct {
			code int
			errs string
		}
		second := make(chan result, 1)
		go func() {
			code, _, errs := runCLI(t.Context(), t, as(bundle), "run", prog)
			second <- result{code, errs}
		}()
		m.waitOutput(t, "file=a.py", 1)
		if code, _, errs := runCLI(t.Context(), t, as(ops), "admin", "drain", "master-local"); code != 0 {
			t.Fatalf("drain: exit %d %s", code, errs)
		}
		start := time.Now()
		var got result
		select {
		case got = <-second:
		case <-time.After(10 * time.Second):
			t.Fatal("the queued job still waits 10 s after its only slave was drained")
		}
		if got.code != exitNoCapacity || !strings.Contains(got.errs, "no_slave") || !strings.Contains(got.errs, "drained") {
			t.Fatalf("exit code %d (want %d), stderr %q", got.code, exitNoCapacity, got.errs)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the queued job ended %v after the drain", d)
		}
		code, _, errs := runCLI(t.Context(), t, as(bundle), "run", prog)
		if code != exitNoCapacity || !strings.Contains(errs, "drained") {
			t.Errorf("a new job with the only slave drained: exit %d, stderr %q", code, errs)
		}
	})
}

// issueExpired writes a client bundle whose key expired a day ago.
func issueExpired(t *testing.T, dir, name string) string {
	t.Helper()
	ca, err := certs.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Issue(certs.IssueRequest{Role: certs.RoleClient, Name: name, Version: version,
		NotBefore: time.Now().Add(-48 * time.Hour), Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".bundle")
	if err := certs.WriteBundle(path, b); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestJobLimitsConfigured sets the master's job limits with flags, as an
// operator does, and checks what users meet: a request over a maximum is
// refused naming the maximum, never lowered; a job asking for nothing gets
// the defaults, lowered to a language's smaller maximum, and `job show`
// lists what it ran under; a policy that cannot work stops the master.
func TestJobLimitsConfigured(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	dir, bundle := clientBundle(t)
	ops := filepath.Join(dir, "ops.bundle")
	mustCLI(t, "issue", "--dir", dir, "--role", "admin", "--name", "ops", "--out", ops)
	addr := freeAddr(t)
	m := startKiln(t, "master", "master", "--dir", dir, "--client-addr", addr, "--slave-addr", freeAddr(t),
		"--local-slots", "1", "--console", "off", "--max-time", "10s", "--language-limits", "python:max-memory=128MiB,default-time=2s")
	m.waitOutput(t, "slave registered", 1)
	env := map[string]string{"KILN_BUNDLE": bundle, "KILN_MASTER": addr}
	prog := writeFile(t, t.TempDir(), "a.py", "print(1)\n")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--time-limit", "2h"}, "time limit 2h0m0s is over the maximum of 10s for python"},
		{[]string{"--memory-limit", "64GiB"}, "memory limit 64GiB is over the maximum of 128MiB for python"},
		{[]string{"--output-limit", "17MiB"}, "output limit 17MiB is over the maximum of 16MiB for python"},
	} {
		code, _, errs := runCLI(t.Context(), t, env, append(append([]string{"run"}, tc.args...), prog)...)
		if code != exitUsage || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", tc.args, code, exitUsage, errs, tc.msg)
		}
	}
	code, out, errs := runCLI(t.Context(), t, env, "run", "--json", prog)
	var r runJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
		t.Fatalf("exit %d, %v, stderr %q", code, err, errs)
	}
	code, out, errs = runCLI(t.Context(), t, map[string]string{"KILN_BUNDLE": ops, "KILN_MASTER": addr}, "admin", "job", "show", r.Job)
	if want := "time 2s, memory 128MiB, output 1MiB"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("job show: exit %d, want %q in:\n%s%s", code, want, out, errs)
	}

	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--language-limits", "cobol:max-time=1s"}, `"cobol:max-time=1s": want LANG:KEY=VALUE`},
		{[]string{"--language-limits", "c:max-tim=1s"}, `unknown key "max-tim"`},
		{[]string{"--max-time", "soon"}, "want a positive duration"},
		{[]string{"--default-time", "2m"}, "the cluster: default time limit 2m0s is over its maximum 1m0s"},
	} {
		code, _, errs := runCLI(t.Context(), t, nil, append([]string{"master", "--dir", dir, "--client-addr", "127.0.0.1:0",
			"--slave-addr", "127.0.0.1:0", "--console", "off"}, tc.args...)...)
		if code == 0 || !strings.Contains(errs, tc.msg) {
			t.Errorf("master %v: exit %d, stderr %q (want %q)", tc.args, code, errs, tc.msg)
		}
	}
}
