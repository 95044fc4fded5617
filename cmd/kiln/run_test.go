package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// runCLI runs `kiln args...` in-process with the given environment.
func runCLI(ctx context.Context, t *testing.T, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return environ[k] }}
	code = run(ctx, e, args)
	return code, out.String(), errb.String()
}

// clientBundle makes a cluster directory and a client bundle in it.
func clientBundle(t *testing.T) (dir, bundle string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "cluster")
	mustCLI(t, "init", "--dir", dir, "--master-host", "127.0.0.1")
	bundle = filepath.Join(dir, "alice.bundle")
	mustCLI(t, "issue", "--dir", dir, "--role", "client", "--name", "alice", "--out", bundle)
	return dir, bundle
}

// TestRunUsage: bad flags and bad input files exit 2 with one clear line,
// before anything is dialled.
func TestRunUsage(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	src := t.TempDir()
	_, bundle := clientBundle(t)
	ok := writeFile(t, src, "ok.py", "print(1)\n")
	envOK := map[string]string{"KILN_BUNDLE": bundle, "KILN_MASTER": unusedAddr(t)}
	cases := []struct {
		name    string
		environ map[string]string
		args    []string
		code    int
		msg     string
	}{
		{"no file", envOK, nil, exitUsage, "exactly one FILE"},
		{"two files", envOK, []string{ok, ok}, exitUsage, "exactly one FILE"},
		{"unknown flag", envOK, []string{"--bogus", ok}, exitUsage, "bogus"},
		{"bad size", envOK, []string{"--memory-limit", "lots", ok}, exitUsage, "invalid size"},
		{"unknown extension", envOK, []string{writeFile(t, src, "notes.txt", "hi")}, exitUsage, "unknown language"},
		{"empty file", envOK, []string{writeFile(t, src, "empty.c", "")}, exitUsage, "empty source"},
		{"missing file", envOK, []string{filepath.Join(src, "nope.c")}, exitUsage, "nope.c"},
		{"directory as FILE", envOK, []string{src}, exitUsage, src + " is a directory; give one source file"},
		{"missing stdin", envOK, []string{"--stdin", filepath.Join(src, "nope.txt"), ok}, exitUsage, "nope.txt"},
		{"no bundle", map[string]string{"KILN_MASTER": "127.0.0.1:1"}, []string{ok}, exitUsage, "no bundle"},
		{"no master", map[string]string{"KILN_BUNDLE": bundle}, []string{ok}, exitUsage, "no master"},
		{"unreadable bundle", map[string]string{"KILN_BUNDLE": filepath.Join(src, "none.bundle"), "KILN_MASTER": "127.0.0.1:1"}, []string{ok}, exitUsage, "none.bundle"},
		{"master unreachable", envOK, []string{ok}, exitUnreachable, "cannot reach master"},
		{"flags after file", envOK, []string{ok, "--json", "--time-limit", "2s"}, exitUnreachable, "cannot reach master"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runCLI(t.Context(), t, tc.environ, append([]string{"run"}, tc.args...)...)
			if code != tc.code || !strings.Contains(errs, tc.msg) || out != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, tc.code, out, errs, tc.msg)
			}
		})
	}
	code, out, _ := runCLI(t.Context(), t, nil, "run", "--help")
	if code != 0 || out != "" {
		t.Errorf("--help: exit %d", code)
	}
	_, _, errs := runCLI(t.Context(), t, nil, "run", "--help")
	for _, want := range []string{"Exit codes:", "101", "110", "111", "112", "-memory-limit SIZE"} {
		if !strings.Contains(errs, want) {
			t.Errorf("--help lacks %q:\n%s", want, errs)
		}
	}
}

// localCluster is a `kiln master --local-slots 2` process; the CLI under
// test runs in-process against it.
type localCluster struct {
	env    map[string]string
	master *proc
}

func startLocalCluster(t *testing.T, slots string) *localCluster {
	t.Helper()
	dir, bundle := clientBundle(t)
	addr := freeAddr(t)
	p := startKiln(t, "master", "master", "--dir", dir, "--client-addr", addr, "--slave-addr", freeAddr(t),
		"--local-slots", slots, "--console", "off")
	if slots != "0" {
		p.waitOutput(t, "slave registered", 1)
	} else {
		p.waitOutput(t, "listening", 1)
	}
	return &localCluster{env: map[string]string{"KILN_BUNDLE": bundle, "KILN_MASTER": addr}, master: p}
}

func TestRunLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	c := startLocalCluster(t, "2")
	src := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	code, out, errs := runCLI(ctx, t, c.env, "run", filepath.Join("..", "..", "examples", "hello.py"))
	if code != 0 || !strings.Contains(out, "hello from python") || errs != "" {
		t.Fatalf("hello.py: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	prog := writeFile(t, src, "echo.py", "import sys\ndata = sys.stdin.read()\nprint(data.upper())\nsys.stderr.write('e\\n')\nsys.exit(7)\n")
	in := writeFile(t, src, "in.txt", "abc")
	code, out, errs = runCLI(ctx, t, c.env, "run", "--stdin", in, prog)
	if code != 7 || out != "ABC\n" || !strings.HasPrefix(errs, "e\n") || !strings.Contains(errs, "runtime_error, exit code 7") {
		t.Fatalf("echo.py: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = runCLI(ctx, t, c.env, "run", prog, "--stdin", in, "--json")
	var r runJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 7 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	if r.Status != "runtime_error" || r.ExitCode != 7 || r.Stdout != "ABC\n" || r.Stderr != "e\n" || r.Slave == "" || r.Job == "" || r.Language != "python" {
		t.Errorf("--json = %+v", r)
	}
	bad := writeFile(t, src, "bad.c", "int main(){ return x; }\n")
	code, _, errs = runCLI(ctx, t, c.env, "run", bad)
	if code != exitCompile || !strings.Contains(errs, "bad.c:1") || !strings.Contains(errs, "compile_error") {
		t.Errorf("bad.c: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI(ctx, t, c.env, "run", "--output-limit", "1k", writeFile(t, src, "spam.py", "print('x' * 100000)\n"))
	if code != exitOutputLimit {
		t.Errorf("output limit: exit %d, stderr %q", code, errs)
	}
}

// TestRunInterrupted: cancelling the context (Ctrl-C) cancels the job on
// the cluster and exits 130; --timeout exits 105.
func TestRunInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	c := startLocalCluster(t, "1")
	prog := writeFile(t, t.TempDir(), "sleep.py", "import time\nprint('started', flush=True)\ntime.sleep(30)\n")
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb syncBuf
	e := env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return c.env[k] }}
	done := make(chan int, 1)
	go func() { done <- run(ctx, e, []string{"run", prog}) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "started") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != exitInterrupted || !strings.Contains(errb.String(), "cancelled") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("kiln run did not return after the interrupt")
	}
	c.master.waitOutput(t, "cancel", 1)

	start := time.Now()
	code, _, errs := runCLI(t.Context(), t, c.env, "run", "--timeout", "1s", prog)
	if code != exitInternal || !strings.Contains(errs, "timed out") || time.Since(start) > 10*time.Second {
		t.Fatalf("--timeout: exit %d after %v, stderr %q", code, time.Since(start), errs)
	}
}

// TestRunStdin: the program's standard input comes from a pipe into
// `kiln run` (`echo bob | kiln run readin.py`), from "--stdin -", or from
// --stdin FILE; on a terminal nothing is read and the program sees EOF.
func TestRunStdin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	c := startLocalCluster(t, "1")
	src := t.TempDir()
	prog := writeFile(t, src, "readin.py", "try:\n    print('hello ' + input())\nexcept EOFError:\n    print('no input')\n")
	in := writeFile(t, src, "in.txt", "carol\n")
	var envv []string
	for k, v := range c.env {
		envv = append(envv, k+"="+v)
	}
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		want  string
	}{
		{"pipe", "bob\n", []string{prog}, "hello bob\n"},
		{"dash", "dave\n", []string{"--stdin", "-", prog}, "hello dave\n"},
		{"file wins over pipe", "bob\n", []string{"--stdin", in, prog}, "hello carol\n"},
		{"nothing piped", "", []string{prog}, "no input\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), kilnBinary(t), append([]string{"run"}, tc.args...)...)
			cmd.Env = append(os.Environ(), envv...)
			cmd.Stdin = strings.NewReader(tc.stdin)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil || out.String() != tc.want {
				t.Fatalf("%v: stdout %q (want %q), stderr %q", err, out.String(), tc.want, errb.String())
			}
		})
	}
	t.Run("terminal", func(t *testing.T) {
		_, pts := openPTY(t)
		var out, errb syncBuf
		e := env{stdin: pts, stdout: &out, stderr: &errb, getenv: func(k string) string { return c.env[k] }}
		if code := run(t.Context(), e, []string{"run", prog}); code != 0 || out.String() != "no input\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
		}
	})
}

// TestRunNoSlave: a master without slaves answers no_slave: exit 112.
func TestRunNoSlave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	c := startLocalCluster(t, "0")
	code, _, errs := runCLI(t.Context(), t, c.env, "run", writeFile(t, t.TempDir(), "a.py", "print(1)\n"))
	if code != exitNoCapacity || !strings.Contains(errs, "python") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestBenchLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	c := startLocalCluster(t, "2")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	hello := filepath.Join("..", "..", "examples", "hello.py")
	procs := runtime.GOMAXPROCS(0)
	code, out, errs := runCLI(ctx, t, c.env, "bench", "--jobs", "6", "--concurrency", "3", "--baseline", hello)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("GOMAXPROCS after the bench: %d, want %d as before", got, procs)
	}
	for _, want := range []string{"6 jobs of hello.py", "client on 1 CPUs (--procs)", "throughput", "p50", "p99", "statuses    ok 6", "throughput ratio cluster/bare", "added p50 latency"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(ctx, t, c.env, "bench", "--jobs", "4", "--concurrency", "2", "--procs", "0", "--json", hello)
	var rep benchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	if rep.ClientProcs != procs {
		t.Errorf("--procs 0: the client ran on %d CPUs, want Go's default %d", rep.ClientProcs, procs)
	}
	total := 0
	for _, n := range rep.Cluster.Slaves {
		total += n
	}
	if rep.Cluster.Jobs != 4 || rep.Cluster.Statuses["ok"] != 4 || total != 4 || rep.Cluster.Throughput <= 0 || rep.Cluster.P50Ms <= 0 {
		t.Errorf("--json = %+v", rep)
	}
	code, _, errs = runCLI(ctx, t, c.env, "bench", "--jobs", "0", hello)
	if code != exitUsage || !strings.Contains(errs, "--jobs") {
		t.Errorf("--jobs 0: exit %d, %q", code, errs)
	}
	code, _, errs = runCLI(ctx, t, c.env, "bench", "--procs", "-1", hello)
	if code != exitUsage || !strings.Contains(errs, "--procs") {
		t.Errorf("--procs -1: exit %d, %q", code, errs)
	}
}
