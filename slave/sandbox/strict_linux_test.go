package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/internal/testenv"
)

var (
	strictOnce sync.Once
	strictR    *Strict
	strictErr  error
)

// newStrictT returns a fresh strict runner closed at the end of the test,
// or skips with the reason when this machine cannot run one.
func newStrictT(t testing.TB) *Strict {
	t.Helper()
	testenv.Root(t, "the strict sandbox (cgroups, uid mappings)")
	r, err := NewStrict(StrictConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

type result struct {
	Outcome
	stdout, stderr string
}

// run runs argv in dir under lim.
func run(t testing.TB, r Runner, dir string, lim Limits, stdin string, argv ...string) result {
	t.Helper()
	var so, se bytes.Buffer
	spec := Spec{Argv: argv, Env: []string{"PATH=/usr/bin:/bin", "HOME=/w", "LANG=C.UTF-8"}, Dir: dir, Stdout: &so, Stderr: &se, Limits: lim, Keep: keepAll}
	if stdin != "" {
		spec.Stdin = strings.NewReader(stdin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := r.Run(ctx, spec)
	if err != nil {
		t.Fatalf("Run %v: %v (stderr %q)", argv, err, se.String())
	}
	return result{out, so.String(), se.String()}
}

// keepAll copies back everything (within the bounds).
func keepAll(string) bool { return true }

func defaultLimits() Limits {
	return Limits{Wall: 10 * time.Second, CPU: 5 * time.Second, MemoryBytes: 256 << 20, OutputBytes: 1 << 20, FileBytes: 16 << 20, Procs: 64, OpenFiles: 256}
}

func writeFile(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStrictHello(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	writeFile(t, dir, "main.py", "import os,sys\nprint('hello', os.getuid(), os.getcwd(), sys.stdin.read())\n")
	res := run(t, r, dir, defaultLimits(), "in", "/usr/bin/python3", "-B", "main.py")
	if res.ExitCode != 0 || res.stdout != "hello 1000 /w in\n" {
		t.Fatalf("got %+v stdout %q stderr %q", res.Outcome, res.stdout, res.stderr)
	}
	t.Logf("outcome %+v", res.Outcome)
}

func TestStrictCompileC(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	writeFile(t, dir, "main.c", "#include <stdio.h>\nint main(){printf(\"hi\\n\");return 3;}\n")
	res := run(t, r, dir, defaultLimits(), "", "gcc", "-O2", "-o", "main", "main.c")
	if res.ExitCode != 0 {
		t.Fatalf("gcc: %+v %s", res.Outcome, res.stderr)
	}
	if _, err := exec.LookPath(filepath.Join(dir, "main")); err != nil {
		t.Fatalf("main not copied back: %v", err)
	}
	res = run(t, r, dir, defaultLimits(), "", "./main")
	if res.ExitCode != 3 || res.stdout != "hi\n" {
		t.Fatalf("got %+v %q", res.Outcome, res.stdout)
	}
}

func TestStrictCheck(t *testing.T) {
	r := newStrictT(t)
	caps, err := r.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox: strict (%s)", caps)
	if len(caps.Namespaces) != 7 || caps.Cgroup == "" || len(caps.Controllers) != 2 {
		t.Fatalf("this machine should have everything: %+v", caps)
	}
}

func TestStrictConcurrent(t *testing.T) {
	r := newStrictT(t)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 8; i++ {
		dir := t.TempDir()
		writeFile(t, dir, "m.py", "print(sum(range(1000)))\n")
		wg.Add(1)
		go func() {
			defer wg.Done()
			var so bytes.Buffer
			spec := Spec{Argv: []string{"/usr/bin/python3", "m.py"}, Dir: dir, Stdout: &so, Limits: defaultLimits()}
			if _, err := r.Run(context.Background(), spec); err != nil || so.String() != "499500\n" {
				errs <- fmt.Sprint(so.String(), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// Files given in memory land in /w, owned by the job with their modes,
// without a Dir (nothing of the host's is then involved) or next to its
// files; a name that is not a base name, a name Dir already has, and Keep
// without a Dir are refused.
func TestStrictFilesFromMemory(t *testing.T) {
	r := newStrictT(t)
	files := []File{{Name: "a.sh", Mode: 0o755, Data: []byte("#!/bin/sh\necho ran\n")}, {Name: "data", Mode: 0o640, Data: []byte("x")}}
	runSpec := func(dir string, files []File, keep func(string) bool) (string, error) {
		var so safeBuf
		spec := Spec{Argv: []string{"/bin/sh", "-c", "stat -c '%n %a %u' * && ./a.sh"}, Env: []string{"PATH=/usr/bin:/bin"},
			Dir: dir, Files: files, Keep: keep, Stdout: &so, Stderr: &so, Limits: defaultLimits()}
		o, err := r.Run(context.Background(), spec)
		if err == nil && o.ExitCode != 0 {
			err = fmt.Errorf("exit %d: %s", o.ExitCode, so.String())
		}
		return so.String(), err
	}
	out, err := runSpec("", files, nil)
	if want := "a.sh 755 1000\ndata 640 1000\nran\n"; err != nil || out != want {
		t.Fatalf("no Dir: %q, %v; want %q", out, err, want)
	}
	dir := t.TempDir()
	writeFile(t, dir, "host", "h")
	out, err = runSpec(dir, files, keepAll)
	if want := "a.sh 755 1000\ndata 640 1000\nhost 644 1000\nran\n"; err != nil || out != want {
		t.Fatalf("with a Dir: %q, %v; want %q", out, err, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("unchanged files were copied back: %v", ents)
	}
	for _, name := range []string{"", ".", "..", "a/b", "/etc/passwd", "a\x00b"} {
		if _, err := runSpec("", []File{{Name: name, Data: []byte("x")}}, nil); !errors.Is(err, ErrBadFile) {
			t.Errorf("file name %q: %v, want ErrBadFile", name, err)
		}
	}
	if _, err := runSpec(dir, []File{{Name: "host", Data: []byte("x")}}, nil); err == nil {
		t.Error("a file over one of Dir's was accepted")
	}
	if _, err := runSpec("", files, keepAll); err == nil {
		t.Error("Keep without a Dir was accepted")
	}
}

// Kills travel on the control socket and runs on the jobs socket, which
// are not ordered with each other: a kill carries its run's number, so a
// late kill of the last run leaves the next one alone, and a kill that
// overtakes its run's message still kills that run.
func TestKillIsForItsRun(t *testing.T) {
	r := newStrictT(t)
	c, err := r.get()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { wg.Wait(); r.put(c, false) }) // before r.Close, which waits for c
	run := func(script string, so *safeBuf) Outcome {
		spec := Spec{Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}, Stdout: so, Stderr: so, Limits: defaultLimits()}
		o, _, reuse, err := c.run(context.Background(), &spec, runOpts{cfg: &r.cfg, bg: r.background})
		if err != nil || !reuse {
			t.Errorf("%q: %v (reuse %v)", script, err, reuse)
		}
		return o
	}
	run("true", &safeBuf{})
	// A kill of that run, arriving while the next one runs.
	last := c.seq
	var so safeBuf
	done := make(chan Outcome, 1)
	wg.Go(func() { done <- run("echo started; sleep 0.5; echo ok", &so) })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(so.String(), "started"); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the run never started")
		}
	}
	c.requestKill(last)
	if o := <-done; o.ExitCode != 0 || so.String() != "started\nok\n" {
		t.Fatalf("a late kill of the last run reached the next: %+v %q", o, so.String())
	}
	c.requestKill(c.seq + 1) // ahead of its run's message
	start := time.Now()
	if o := run("sleep 5", &safeBuf{}); o.Signal != int(syscall.SIGKILL) || time.Since(start) > 3*time.Second {
		t.Fatalf("a kill ahead of its run: %+v after %v", o, time.Since(start))
	}
}
