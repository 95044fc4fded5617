//go:build linux

package sandbox

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kiln/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testEnv = []string{"PATH=/usr/bin:/bin", "KILN_TEST=1"}

// safeBuf is a bytes.Buffer safe for the runner's writer goroutines.
type safeBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runSh(t *testing.T, script string, lim Limits, stdin []byte) (Outcome, string, string) {
	t.Helper()
	var out, errb safeBuf
	spec := Spec{
		Argv: []string{"sh", "-c", script}, Env: testEnv, Dir: t.TempDir(),
		Stdout: &out, Stderr: &errb, Limits: lim,
	}
	if stdin != nil {
		spec.Stdin = bytes.NewReader(stdin)
	}
	o, err := (&Plain{}).Run(context.Background(), spec)
	if err != nil {
		t.Fatalf("Run(%q): %v", script, err)
	}
	return o, out.String(), errb.String()
}

func TestPlainExitCodes(t *testing.T) {
	for _, tc := range []struct {
		script   string
		exit     int
		signal   int
		out, err string
	}{
		{"echo hi; echo oops >&2", 0, 0, "hi\n", "oops\n"},
		{"exit 3", 3, 0, "", ""},
		{"kill -TERM $$", -1, int(syscall.SIGTERM), "", ""},
		{"kill -SEGV $$", -1, int(syscall.SIGSEGV), "", ""},
	} {
		o, out, errs := runSh(t, tc.script, Limits{Wall: 5 * time.Second}, nil)
		if o.ExitCode != tc.exit || o.Signal != tc.signal || out != tc.out || errs != tc.err {
			t.Errorf("%q: got exit %d signal %d out %q err %q, want %d %d %q %q",
				tc.script, o.ExitCode, o.Signal, out, errs, tc.exit, tc.signal, tc.out, tc.err)
		}
		if o.StdoutBytes != int64(len(tc.out)) || o.StderrBytes != int64(len(tc.err)) {
			t.Errorf("%q: byte counts %d/%d", tc.script, o.StdoutBytes, o.StderrBytes)
		}
	}
}

func TestPlainEnvDirStdin(t *testing.T) {
	var out safeBuf
	dir := t.TempDir()
	spec := Spec{
		Argv: []string{"sh", "-c", `env | sort; pwd; cat`}, Env: testEnv, Dir: dir,
		Stdin: strings.NewReader("from stdin\n"), Stdout: &out,
	}
	if _, err := (&Plain{}).Run(context.Background(), spec); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"KILN_TEST=1\n", "PATH=/usr/bin:/bin\n", dir + "\n", "from stdin\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "HOME=") || strings.Contains(got, "GOPATH") {
		t.Errorf("environment leaked into the child: %q", got)
	}
}

// Plain writes Spec.Files into Dir, new files with their modes, and
// refuses a name that is not a base name.
func TestPlainFiles(t *testing.T) {
	var out safeBuf
	spec := Spec{Argv: []string{"./a.sh"}, Env: testEnv, Dir: t.TempDir(), Stdout: &out,
		Files: []File{{Name: "a.sh", Mode: 0o700, Data: []byte("#!/bin/sh\necho ran\n")}}}
	if o, err := (&Plain{}).Run(context.Background(), spec); err != nil || o.ExitCode != 0 || out.String() != "ran\n" {
		t.Fatalf("%+v %v %q", o, err, out.String())
	}
	spec.Files = []File{{Name: "../a.sh"}}
	if _, err := (&Plain{}).Run(context.Background(), spec); !errors.Is(err, ErrBadFile) {
		t.Fatalf("name ../a.sh: %v", err)
	}
}

func TestPlainRlimits(t *testing.T) {
	lim := Limits{OpenFiles: 33, FileBytes: 1 << 20, MemoryBytes: 512 << 20, CPU: 1500 * time.Millisecond}
	_, out, _ := runSh(t, "ulimit -n; ulimit -c; ulimit -f; ulimit -v; ulimit -t", lim, nil)
	// dash prints -f in 512-byte blocks and -v in KiB.
	if want := "33\n0\n2048\n524288\n2\n"; out != want {
		t.Errorf("limits %q, want %q", out, want)
	}
	lim.NoAddressSpaceLimit = true
	_, out, _ = runSh(t, "ulimit -v", lim, nil)
	if out != "unlimited\n" {
		t.Errorf("NoAddressSpaceLimit: ulimit -v = %q", out)
	}
}

// alive reports whether pid runs (zombies count as gone).
func alive(pid int) bool {
	st, _, ok := procStat(strconv.Itoa(pid))
	return ok && st != "Z" && st != "X"
}

func leftPid(t *testing.T, out string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]))
	if err != nil {
		t.Fatalf("no child pid in %q", out)
	}
	return pid
}

func TestPlainTimeoutKillsTree(t *testing.T) {
	start := time.Now()
	o, out, _ := runSh(t, "sleep 100 & echo $!; sleep 100", Limits{Wall: 300 * time.Millisecond}, nil)
	if !o.TimedOut || o.Signal != int(syscall.SIGKILL) {
		t.Errorf("outcome %+v, want timed out by SIGKILL", o)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v", el)
	}
	if pid := leftPid(t, out); alive(pid) {
		t.Errorf("child %d survived the timeout", pid)
	}
}

func TestPlainLeftoverKilledOnExit(t *testing.T) {
	o, out, _ := runSh(t, "sleep 100 & echo $!", Limits{Wall: 10 * time.Second}, nil)
	if o.ExitCode != 0 || o.TimedOut {
		t.Errorf("outcome %+v", o)
	}
	if pid := leftPid(t, out); alive(pid) {
		t.Errorf("background child %d survived its parent", pid)
	}
}

func TestPlainCPULimit(t *testing.T) {
	// The wall limit is far above the CPU limit so that the CPU limit ends
	// the loop on a loaded machine too; RLIMIT_CPU counts sampled ticks
	// while o.CPU is exact, so SIGXCPU may come a little before 1 s of it
	// (0.875 s seen under load).
	o, _, _ := runSh(t, "while :; do :; done", Limits{CPU: time.Second, Wall: 60 * time.Second}, nil)
	if !o.TimedOut || o.Signal != int(syscall.SIGXCPU) || o.CPU < 800*time.Millisecond {
		t.Errorf("outcome %+v, want SIGXCPU after ~1s of CPU", o)
	}
}

func TestPlainOutputFlood(t *testing.T) {
	var out safeBuf
	spec := Spec{
		Argv: []string{"sh", "-c", "yes & yes >&2"}, Env: testEnv, Dir: t.TempDir(),
		Stdout: &out, Stderr: &out, Limits: Limits{OutputBytes: 100000, Wall: 10 * time.Second},
	}
	o, err := (&Plain{}).Run(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if !o.OutputExceeded || o.TimedOut || o.StdoutBytes+o.StderrBytes != 100000 || len(out.String()) != 100000 {
		t.Errorf("outcome %+v, kept %d bytes", o, len(out.String()))
	}
}

func TestPlainCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := (&Plain{}).Run(ctx, Spec{Argv: []string{"sleep", "100"}, Env: testEnv, Dir: t.TempDir()})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 3*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
}

func TestPlainMissingProgram(t *testing.T) {
	_, err := (&Plain{}).Run(context.Background(), Spec{Argv: []string{"no-such-tool"}, Env: testEnv, Dir: t.TempDir()})
	if err == nil {
		t.Fatal("want an error for a program not in PATH")
	}
}

func TestPlainUsage(t *testing.T) {
	var out safeBuf
	spec := Spec{
		Argv: []string{"/usr/bin/python3", "-c", "b = bytearray(64 << 20); import time; t = time.process_time()\nwhile time.process_time() - t < 0.2: pass"},
		Env:  testEnv, Dir: t.TempDir(), Stderr: &out,
	}
	testenv.File(t, spec.Argv[0])
	o, err := (&Plain{}).Run(context.Background(), spec)
	if err != nil || o.ExitCode != 0 {
		t.Fatalf("%v %+v %s", err, o, out.String())
	}
	if o.PeakMemoryKiB < 64<<10 || o.CPU < 150*time.Millisecond || o.Wall < o.CPU/2 {
		t.Errorf("usage %+v: want ≥ 64 MiB peak and ≥ 150ms CPU", o)
	}
}
