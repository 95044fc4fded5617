package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kiln/certs"
	"kiln/client"
	"kiln/transport/wire"
)

// The end-to-end tests run the real kiln binary as a user does: a master
// and slaves as processes on loopback with real certificates, and real
// compilers behind them.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// TestMain removes the binary built for the end-to-end tests, and checks
// that no test left a goroutine behind.
func TestMain(m *testing.M) {
	before := goleak.IgnoreCurrent()
	// kiln run's slave cache (runslaves.go) of the binaries the tests
	// start goes to a directory of this run, not the user's.
	cacheDir, err := os.MkdirTemp("", "kiln-test-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CACHE_HOME", cacheDir)
	code := m.Run()
	os.RemoveAll(cacheDir)
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	if code == 0 {
		if err := goleak.Find(before); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// kilnBinary builds bin/kiln once for the package's tests.
func kilnBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kiln-e2e-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "kiln")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a kiln process the test owns; Cleanup kills it.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startKiln(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(kilnBinary(t), args...), out: &syncBuf{}, done: make(chan struct{})}
	return p.start(t, name)
}

func (p *proc) start(t *testing.T, name string) *proc {
	t.Helper()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// stop asks the process to exit, then kills its process group.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) kill() {
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

func (p *proc) waitOutput(t *testing.T, substr string, count int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Count(p.out.String(), substr) >= count {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("process exited while waiting for %q:\n%s", substr, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %d× %q within 20 s:\n%s", count, substr, p.out.String())
}

// kilnCmd runs the binary to completion and returns exit code and outputs.
func kilnCmd(t *testing.T, envv []string, args ...string) (int, string, string) {
	t.Helper()
	bin := kilnBinary(t) // the first call builds it: not within the command's 60 s
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), envv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// e2eCluster is a master and n slaves as processes.
type e2eCluster struct {
	dir, clientAddr, slaveAddr string
	master                     *proc
	slaves                     map[string]*proc
	env                        []string
}

func startCluster(t *testing.T, slaves int, slaveArgs ...string) *e2eCluster {
	t.Helper()
	dir := t.TempDir()
	c := &e2eCluster{dir: dir, clientAddr: freeAddr(t), slaveAddr: freeAddr(t), slaves: map[string]*proc{}}
	mustKiln(t, "certs", "init", "--dir", dir, "--master-host", "127.0.0.1")
	mustKiln(t, "certs", "issue", "--dir", dir, "--role", "client", "--name", "user", "--out", filepath.Join(dir, "client.bundle"))
	c.master = startKiln(t, "master", "master", "--dir", dir, "--client-addr", c.clientAddr, "--slave-addr", c.slaveAddr,
		"--heartbeat", "500ms", "--console", "off")
	for i := 1; i <= slaves; i++ {
		c.addSlave(t, fmt.Sprintf("slave-%d", i), slaveArgs...)
	}
	c.env = []string{"KILN_BUNDLE=" + filepath.Join(dir, "client.bundle"), "KILN_MASTER=" + c.clientAddr}
	return c
}

func (c *e2eCluster) addSlave(t *testing.T, name string, extra ...string) *proc {
	t.Helper()
	b := filepath.Join(c.dir, name+".bundle")
	if _, err := os.Stat(b); err != nil {
		mustKiln(t, "certs", "issue", "--dir", c.dir, "--role", "slave", "--name", name, "--out", b)
	}
	args := append([]string{"slave", "--bundle", b, "--master", c.slaveAddr, "--slots", "2", "--load-interval", "500ms",
		"--work-dir", filepath.Join(c.dir, name+"-work")}, extra...)
	p := startKiln(t, name, args...)
	c.slaves[name] = p
	c.master.waitOutput(t, "peer="+name+" ", 1)
	c.master.waitOutput(t, "slave registered", len(c.slaves))
	return p
}

func mustKiln(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := kilnCmd(t, nil, args...)
	if code != 0 {
		t.Fatalf("kiln %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEndToEndLanguages runs the four examples and the exit-code contract
// through a real master and two real slaves.
func TestEndToEndLanguages(t *testing.T) {
	c := startCluster(t, 2)
	examples := map[string]string{
		"hello.c": "hello from c", "hello.cpp": "hello from cpp",
		"Hello.java": "hello from java", "hello.py": "hello from python",
	}
	for file, want := range examples {
		t.Run(file, func(t *testing.T) {
			code, out, errs := kilnCmd(t, c.env, "run", filepath.Join("..", "..", "examples", file))
			if code != 0 || !strings.Contains(out, want) {
				t.Fatalf("exit %d stdout %q stderr %q", code, out, errs)
			}
		})
	}

	src := t.TempDir()
	cases := []struct {
		name, file, body string
		args             []string
		code             int
		status           string
		stdout, stderr   string
	}{
		{"exit code", "exit3.c", "#include <stdio.h>\nint main(){puts(\"bye\");return 3;}\n", nil, 3, "runtime_error", "bye", ""},
		{"stdin", "echo.py", "import sys\nprint(sys.stdin.read().upper())\n", []string{"--stdin", "STDIN"}, 0, "ok", "FROM STDIN", ""},
		{"stderr", "err.py", "import sys\nsys.stderr.write('oops\\n')\n", nil, 0, "ok", "", "oops"},
		{"compile error", "bad.c", "int main(){ return x; }\n", nil, exitCompile, "compile_error", "", "bad.c:1"},
		{"crash", "crash.c", "int main(){ int *p = 0; return *p; }\n", nil, 128 + 11, "runtime_error", "", ""},
		{"time limit", "loop.py", "while True: pass\n", []string{"--time-limit", "1s"}, exitTimeLimit, "time_limit", "", ""},
		{"python exception", "raise.py", "raise ValueError('boom')\n", nil, 1, "runtime_error", "", "ValueError: boom"},
	}
	stdin := writeFile(t, src, "stdin.txt", "from stdin")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"run"}
			for _, a := range tc.args {
				if a == "STDIN" {
					a = stdin
				}
				args = append(args, a)
			}
			args = append(args, writeFile(t, src, tc.file, tc.body))
			code, out, errs := kilnCmd(t, c.env, args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tc.code, out, tc.stdout, errs, tc.stderr)
			}
			_, js, _ := kilnCmd(t, c.env, append(append([]string{"run", "--json"}, args[1:len(args)-1]...), args[len(args)-1])...)
			var r map[string]any
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				t.Fatalf("--json printed %q: %v", js, err)
			}
			if r["status"] != tc.status {
				t.Fatalf("--json status %v, want %s (%s)", r["status"], tc.status, js)
			}
		})
	}
}

// TestEndToEndBadInput: refused before or by the cluster, with the
// documented exit codes and one clear line.
func TestEndToEndBadInput(t *testing.T) {
	c := startCluster(t, 1)
	src := t.TempDir()
	cases := []struct {
		name string
		env  []string
		file string
		code int
		msg  string
	}{
		{"unknown extension", c.env, writeFile(t, src, "notes.txt", "hello"), exitUsage, ".txt"},
		{"empty file", c.env, writeFile(t, src, "empty.c", ""), exitUsage, "empty"},
		{"missing file", c.env, filepath.Join(src, "nope.c"), exitUsage, "nope.c"},
		{"master unreachable", []string{"KILN_BUNDLE=" + filepath.Join(c.dir, "client.bundle"), "KILN_MASTER=" + freeAddr(t)},
			writeFile(t, src, "ok.c", "int main(){}"), exitUnreachable, "cannot reach master"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := kilnCmd(t, tc.env, "run", tc.file)
			if code != tc.code || !strings.Contains(errs, tc.msg) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errs, tc.msg)
			}
		})
	}
	t.Run("revoked key", func(t *testing.T) {
		mustKiln(t, "certs", "revoke", "--dir", c.dir, "user")
		// The master sees the registry file change on its next poll: until
		// then a run may still pass; from then on every run is refused.
		prog := writeFile(t, src, "ok2.c", "int main(){}")
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, _, errs := kilnCmd(t, c.env, "run", prog)
			if code == exitRefused && strings.Contains(errs, "master refused this key: revoked") {
				break
			}
			if code != 0 || time.Now().After(deadline) {
				t.Fatalf("exit %d, stderr %q: want the key refused as revoked", code, errs)
			}
		}
		if code, _, errs := kilnCmd(t, c.env, "run", prog); code != exitRefused {
			t.Fatalf("a run after the refusal: exit %d, stderr %q", code, errs)
		}
	})
}

// TestEndToEndSlaveKilled: the slave running a job dies (SIGKILL); the job
// is requeued as attempt 2, runs again on the other slave, and the client
// receives exactly one Result, with only the second attempt's output.
func TestEndToEndSlaveKilled(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := certs.ReadBundle(filepath.Join(c.dir, "client.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	clog := &syncBuf{}
	cl, err := client.Dial(ctx, client.Config{Bundle: b, Master: c.clientAddr,
		Logger: slog.New(slog.NewTextHandler(clog, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	job, err := cl.Submit(ctx, client.Request{FileName: "slow.py",
		Source: []byte("import time\nprint('started', flush=True)\ntime.sleep(2)\nprint('survived')\n")})
	if err != nil {
		t.Fatal(err)
	}
	var (
		victim, requeued string
		results          []wire.Result
	)
	for ev := range job.Events() {
		switch {
		case ev.Output != nil && ev.Output.Attempt == 1 && victim != "" && requeued == "":
			c.slaves[victim].kill() // attempt 1 is running its program
			requeued = "killed"
		case ev.State != nil && ev.State.State == wire.StateRunning && ev.State.Attempt == 1:
			victim = ev.State.Slave
		case ev.State != nil && ev.State.State == wire.StateRequeued:
			if ev.State.Attempt != 2 || requeued != "killed" {
				t.Fatalf("requeued %+v (after the kill: %v), want attempt 2 after the kill", *ev.State, requeued == "killed")
			}
			requeued = "attempt 2"
		case ev.Result != nil:
			results = append(results, *ev.Result)
		}
	}
	out, err := job.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if victim == "" || requeued != "attempt 2" {
		t.Fatalf("ran on %q, requeue %q: the job was never requeued as attempt 2", victim, requeued)
	}
	if len(results) != 1 || out.Attempts != 2 || out.Result.Attempt != 2 || out.Result.Status != wire.StatusOK ||
		out.Result.Slave == victim || string(out.Stdout) != "started\nsurvived\n" {
		t.Fatalf("%d result(s) %+v, attempts %d, stdout %q; want one ok result of attempt 2 away from %s",
			len(results), out.Result, out.Attempts, out.Stdout, victim)
	}
	// Anything the master sent before answering this request has reached
	// the client: a second Result would show in its log as a late message.
	if _, err := cl.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(clog.String(), `msg="message for unknown job" type=Result`) {
		t.Fatalf("the client got a Result after the job ended:\n%s", clog.String())
	}
}

// TestEndToEndMasterRestart: the master goes away and comes back on the same
// addresses; the slave reconnects by itself and jobs run again.
func TestEndToEndMasterRestart(t *testing.T) {
	c := startCluster(t, 1)
	prog := writeFile(t, t.TempDir(), "again.py", "print('after restart')\n")
	c.master.stop()
	code, _, errs := kilnCmd(t, c.env, "run", prog)
	if code != exitUnreachable || !strings.Contains(errs, "cannot reach master") {
		t.Fatalf("with the master down: exit %d, stderr %q", code, errs)
	}
	c.master = startKiln(t, "master (restarted)", "master", "--dir", c.dir, "--client-addr", c.clientAddr,
		"--slave-addr", c.slaveAddr, "--heartbeat", "500ms", "--console", "off")
	c.master.waitOutput(t, "slave registered", 1)
	code, out, errs := kilnCmd(t, c.env, "run", prog)
	if code != 0 || !strings.Contains(out, "after restart") {
		t.Fatalf("after the restart: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestEndToEndSlaveCopyAndRevocation: a second `kiln slave` with a copy of
// a live slave's bundle is refused already_connected and waits to retry
// (it used to replace the real slave, which then exited for good); once
// the key is revoked the real slave exits with 110, the code a supervisor
// is told not to restart.
func TestEndToEndSlaveCopyAndRevocation(t *testing.T) {
	c := startCluster(t, 1)
	b := filepath.Join(c.dir, "slave-1.bundle")
	cp := startKiln(t, "copy", "slave", "--bundle", b, "--master", c.slaveAddr, "--slots", "1",
		"--work-dir", filepath.Join(c.dir, "copy-work"))
	cp.waitOutput(t, "reconnecting", 1)
	if !strings.Contains(cp.out.String(), "already has a live session") {
		t.Fatalf("the copy was not refused as already connected:\n%s", cp.out.String())
	}
	cp.stop()
	if code := cp.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the copy, refused for a temporary reason and stopped, exited %d", code)
	}
	real := c.slaves["slave-1"]
	select {
	case <-real.done:
		t.Fatalf("the real slave exited:\n%s", real.out.String())
	default:
	}
	mustKiln(t, "certs", "revoke", "--dir", c.dir, "slave-1")
	select {
	case <-real.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the slave still runs 10 s after its key was revoked")
	}
	if code := real.cmd.ProcessState.ExitCode(); code != exitRefused {
		t.Fatalf("the revoked slave exited %d, want %d:\n%s", code, exitRefused, real.out.String())
	}
}
