package slave

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/internal/testenv"
	"kiln/limits"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

var (
	detectOnce sync.Once
	detected   []wire.Toolchain
)

// toolchains detects the machine's toolchains once per test binary.
func toolchains(t testing.TB) []wire.Toolchain {
	t.Helper()
	detectOnce.Do(func() { detected = Detect(context.Background()) })
	return detected
}

func needLang(t testing.TB, lang string) {
	t.Helper()
	for _, tc := range toolchains(t) {
		if tc.Language == lang {
			return
		}
	}
	testenv.Need(t, "a "+lang+" toolchain", errors.New("slave.Detect found none on this machine"))
}

func newExecutor(t testing.TB, runner sandbox.Runner) (*Executor, *Cache) {
	t.Helper()
	cache, err := NewCache(t.TempDir(), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if runner == nil {
		runner = &sandbox.Plain{}
	}
	e, err := NewExecutor(ExecConfig{
		Name: "test-slave", WorkRoot: t.TempDir(), Runner: runner,
		Toolchains: toolchains(t), Cache: cache,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, cache
}

// collector gathers emitted output per stream.
type collector struct {
	mu  sync.Mutex
	out [4]bytes.Buffer
}

func (c *collector) emit(stream uint8, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out[stream].Write(data)
}

func (c *collector) stream(s uint8) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out[s].String()
}

func execute(t *testing.T, e *Executor, job Job) (wire.Result, *collector) {
	t.Helper()
	c := &collector{}
	if job.ID == "" {
		job.ID = t.Name()
	}
	res := e.Execute(context.Background(), job, c.emit)
	return res, c
}

func TestExamples(t *testing.T) {
	e, _ := newExecutor(t, nil)
	for _, tc := range []struct {
		file, lang, want string
	}{
		{"hello.c", wire.LangC, "hello from c\nfirst 10 primes: 2 3 5 7 11 13 17 19 23 29\n"},
		{"hello.cpp", wire.LangCPP, "hello from cpp\n20! = 2432902008176640000\n"},
		{"Hello.java", wire.LangJava, "hello from java\nfirst 10 fibonacci: 0 1 1 2 3 5 8 13 21 34\n"},
		{"hello.py", wire.LangPython, "hello from python\nsum of squares 1..100 = 338350\n"},
	} {
		t.Run(tc.lang, func(t *testing.T) {
			needLang(t, tc.lang)
			src, err := os.ReadFile(filepath.Join("..", "examples", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			res, c := execute(t, e, Job{Language: tc.lang, FileName: tc.file, Source: src})
			if res.Status != wire.StatusOK || c.stream(wire.StreamStdout) != tc.want {
				t.Fatalf("%s: %+v\nstdout %q\nstderr %q\ncompile %s", tc.file, res,
					c.stream(wire.StreamStdout), c.stream(wire.StreamStderr), res.CompileOutput)
			}
			if res.Slave != "test-slave" || res.Language != tc.lang || res.Compiler == "" ||
				res.StdoutBytes != int64(len(tc.want)) || res.MemoryKiB <= 0 || res.WallMs < 0 {
				t.Errorf("result fields: %+v", res)
			}
		})
	}
}

func TestExecuteCacheHit(t *testing.T) {
	needLang(t, wire.LangC)
	e, cache := newExecutor(t, nil)
	job := Job{Language: wire.LangC, FileName: "x.c", Source: []byte(`#include <stdio.h>
int main(void){puts("cached?");return 0;}`)}
	first, _ := execute(t, e, job)
	second, c := execute(t, e, job)
	if first.Status != wire.StatusOK || first.Cached || second.Status != wire.StatusOK || !second.Cached {
		t.Fatalf("first %+v\nsecond %+v", first, second)
	}
	if c.stream(wire.StreamStdout) != "cached?\n" || cache.Len() != 1 {
		t.Errorf("cached run printed %q; cache has %d entries", c.stream(wire.StreamStdout), cache.Len())
	}
	job.Source = append(job.Source, '\n')
	if third, _ := execute(t, e, job); third.Cached {
		t.Error("a different source hit the cache")
	}
}

// The compile cache must not tell one client that another compiled the
// same file (an oracle on other clients' sources), unless the operator
// chose a shared cache.
func TestExecuteCachePerOwner(t *testing.T) {
	needLang(t, wire.LangC)
	src := []byte("int main(void){return 0;}\n")
	for _, shared := range []bool{false, true} {
		e, _ := newExecutor(t, nil)
		e.cfg.SharedCache = shared
		bob, _ := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: src, Owner: "bob"})
		alice, _ := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: src, Owner: "alice"})
		again, _ := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: src, Owner: "alice"})
		if bob.Status != wire.StatusOK || bob.Cached || alice.Cached != shared || !again.Cached {
			t.Fatalf("shared %v: bob %+v\nalice %+v\nalice again %+v", shared, bob, alice, again)
		}
	}
}

func TestExecuteJavaCacheHit(t *testing.T) {
	needLang(t, wire.LangJava)
	e, _ := newExecutor(t, nil)
	job := Job{Language: wire.LangJava, FileName: "Two.java", Source: []byte(`class Other { static int v() { return 41; } }
public class Two { public static void main(String[] a) { System.out.println(Other.v() + 1); } }`)}
	execute(t, e, job)
	res, c := execute(t, e, job)
	if res.Status != wire.StatusOK || !res.Cached || c.stream(wire.StreamStdout) != "42\n" {
		t.Fatalf("%+v %q %q", res, c.stream(wire.StreamStdout), c.stream(wire.StreamStderr))
	}
}

func TestExecuteStatuses(t *testing.T) {
	e, _ := newExecutor(t, nil)
	for _, tc := range []struct {
		name, lang, file, src string
		stdin                 string
		limits                wire.JobLimits
		status                string
		check                 func(wire.Result, *collector) bool
	}{
		{"compile error", wire.LangC, "a.c", "int main( {", "", wire.JobLimits{}, wire.StatusCompileError,
			func(r wire.Result, _ *collector) bool { return bytes.Contains(r.CompileOutput, []byte("error")) }},
		{"exit code", wire.LangC, "a.c", "int main(void){return 3;}", "", wire.JobLimits{}, wire.StatusRuntimeError,
			func(r wire.Result, _ *collector) bool { return r.ExitCode == 3 }},
		{"segfault", wire.LangCPP, "a.cpp", "int main(){ volatile int *p = nullptr; return *p; }", "", wire.JobLimits{}, wire.StatusRuntimeError,
			func(r wire.Result, _ *collector) bool { return r.Signal == int(syscall.SIGSEGV) }},
		{"stdin", wire.LangPython, "echo.py", "import sys\nprint(sys.stdin.read().upper(), end='')", "shout\n", wire.JobLimits{}, wire.StatusOK,
			func(_ wire.Result, c *collector) bool { return c.stream(wire.StreamStdout) == "SHOUT\n" }},
		{"stderr", wire.LangPython, "e.py", "import sys\nsys.stderr.write('warn\\n')\nsys.exit(2)", "", wire.JobLimits{}, wire.StatusRuntimeError,
			func(r wire.Result, c *collector) bool {
				return r.ExitCode == 2 && c.stream(wire.StreamStderr) == "warn\n"
			}},
		{"time limit", wire.LangPython, "spin.py", "while True: pass", "", wire.JobLimits{TimeMs: 500}, wire.StatusTimeLimit, nil},
		{"sleep limit", wire.LangPython, "nap.py", "import time\ntime.sleep(60)", "", wire.JobLimits{TimeMs: 300}, wire.StatusTimeLimit,
			func(r wire.Result, _ *collector) bool { return r.WallMs < 2000 }},
		{"output limit", wire.LangPython, "flood.py", "while True: print('x' * 1000)", "", wire.JobLimits{OutputBytes: 10000}, wire.StatusOutputLimit,
			func(r wire.Result, c *collector) bool {
				return len(c.stream(wire.StreamStdout)) == 10000 && r.StdoutBytes == 10000
			}},
		{"python memory", wire.LangPython, "big.py", "x = bytearray(512 << 20)", "", wire.JobLimits{MemoryBytes: 64 << 20}, wire.StatusMemoryLimit, nil},
		{"cpp memory", wire.LangCPP, "big.cpp", "#include <vector>\nint main(){ std::vector<char> v(1u << 30, 1); return v[5]; }", "", wire.JobLimits{MemoryBytes: 64 << 20}, wire.StatusMemoryLimit, nil},
		{"java memory", wire.LangJava, "Big.java", "public class Big { public static void main(String[] a) { long[] x = new long[200 << 20]; System.out.println(x.length); } }", "", wire.JobLimits{MemoryBytes: 64 << 20}, wire.StatusMemoryLimit, nil},
		{"bad name", wire.LangC, "../evil.c", "int main(void){return 0;}", "", wire.JobLimits{}, wire.StatusCompileError, nil},
		{"bad java name", wire.LangJava, "hello-world.java", "class X {}", "", wire.JobLimits{}, wire.StatusCompileError, nil},
		{"unknown language", "cobol", "a.cob", "", "", wire.JobLimits{}, wire.StatusInternalError, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.lang != "cobol" {
				needLang(t, tc.lang)
			}
			res, c := execute(t, e, Job{Language: tc.lang, FileName: tc.file, Source: []byte(tc.src),
				Stdin: []byte(tc.stdin), Limits: tc.limits})
			if res.Status != tc.status || (tc.check != nil && !tc.check(res, c)) {
				t.Errorf("got %+v\nstdout %.200q\nstderr %.500q\ncompile %.500s", res,
					c.stream(wire.StreamStdout), c.stream(wire.StreamStderr), res.CompileOutput)
			}
		})
	}
}

func TestExecuteCancel(t *testing.T) {
	needLang(t, wire.LangPython)
	e, _ := newExecutor(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res := e.Execute(ctx, Job{ID: "c", Language: wire.LangPython, FileName: "a.py",
		Source: []byte("import time\ntime.sleep(30)")}, nil)
	if res.Status != wire.StatusCancelled || time.Since(start) > 5*time.Second {
		t.Errorf("%+v after %v", res, time.Since(start))
	}
}

func TestExecuteCleansWorkRoot(t *testing.T) {
	needLang(t, wire.LangPython)
	root := t.TempDir()
	e, err := NewExecutor(ExecConfig{WorkRoot: root, WorkBytes: -1, Runner: &sandbox.Plain{}, Toolchains: toolchains(t)})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := execute(t, e, Job{Language: wire.LangPython, FileName: "a.py",
		Source: []byte("import os\nos.mkdir('locked')\nopen('locked/f','w').write('x')\nos.chmod('locked', 0)")})
	if res.Status != wire.StatusOK {
		t.Fatalf("%+v", res)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("work root not cleaned: %v", ents)
	}
}

// plantingRunner stands in for the compiler: instead of a binary it leaves
// a symlink or a FIFO named main, then runs the rest with Plain.
type plantingRunner struct {
	sandbox.Plain
	compiler string
	plant    func(dir string) error
}

func (p *plantingRunner) Run(ctx context.Context, s sandbox.Spec) (sandbox.Outcome, error) {
	if s.Argv[0] == p.compiler {
		return sandbox.Outcome{}, p.plant(s.Dir)
	}
	return p.Plain.Run(ctx, s)
}

func TestExecuteRefusesPlantedArtifacts(t *testing.T) {
	needLang(t, wire.LangC)
	var gcc string
	for _, tc := range toolchains(t) {
		if tc.Language == wire.LangC {
			gcc = tc.Path
		}
	}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("#!/bin/sh\necho secret\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, plant := range map[string]func(string) error{
		"symlink": func(dir string) error { return os.Symlink(secret, filepath.Join(dir, "main")) },
		"fifo":    func(dir string) error { return syscall.Mkfifo(filepath.Join(dir, "main"), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			e, cache := newExecutor(t, &plantingRunner{compiler: gcc, plant: plant})
			done := make(chan struct{})
			go func() {
				defer close(done)
				execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: []byte("int main(){}"),
					Limits: wire.JobLimits{TimeMs: 1000}})
			}()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Execute blocked on a planted " + name)
			}
			if cache.Len() != 0 {
				t.Errorf("a planted %s was cached", name)
			}
		})
	}
}

// TestLimitsCeiling: zero limits take the slave's defaults, and limits over
// its maxima are refused, never lowered.
func TestLimitsCeiling(t *testing.T) {
	e, err := NewExecutor(ExecConfig{WorkRoot: t.TempDir(), Runner: &sandbox.Plain{},
		Limits: limits.Policy{Bounds: limits.Bounds{Max: wire.JobLimits{TimeMs: 10000, MemoryBytes: 1 << 30, OutputBytes: 4 << 20}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in, want wire.JobLimits
		err      string
	}{
		{wire.JobLimits{}, wire.JobLimits{TimeMs: 5000, MemoryBytes: 256 << 20, OutputBytes: 1 << 20}, ""},
		{wire.JobLimits{TimeMs: 99999}, wire.JobLimits{}, "time limit 1m39.999s is over the maximum of 10s for c"},
		{wire.JobLimits{MemoryBytes: 8 << 30}, wire.JobLimits{}, "memory limit 8GiB is over the maximum of 1GiB"},
		{wire.JobLimits{TimeMs: 100, MemoryBytes: 1 << 20, OutputBytes: 10}, wire.JobLimits{TimeMs: 100, MemoryBytes: 1 << 20, OutputBytes: 10}, ""},
		{wire.JobLimits{TimeMs: 100, MemoryBytes: 1 << 20, OutputBytes: 1 << 40}, wire.JobLimits{}, "output limit 1TiB is over the maximum of 4MiB"},
		{wire.JobLimits{OutputBytes: -1}, wire.JobLimits{}, "negative"},
	} {
		got, err := e.Limits("c", tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Limits(%+v) = %+v, %v; want %q", tc.in, got, err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("Limits(%+v) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// TestOutputLimitCeiling: a job asking for more output than the slave's
// maximum fails without running (a master cannot lift the slave's bound);
// one asking for the maximum is cut there.
func TestOutputLimitCeiling(t *testing.T) {
	needLang(t, wire.LangPython)
	e, err := NewExecutor(ExecConfig{WorkRoot: t.TempDir(), Runner: &sandbox.Plain{}, Toolchains: toolchains(t),
		Limits: limits.Policy{Bounds: limits.Bounds{Max: wire.JobLimits{OutputBytes: 10000}}}})
	if err != nil {
		t.Fatal(err)
	}
	flood := Job{Language: wire.LangPython, FileName: "flood.py", Source: []byte("while True: print('x' * 1000)"),
		Limits: wire.JobLimits{OutputBytes: 1 << 30, TimeMs: 2000}}
	res, c := execute(t, e, flood)
	if res.Status != wire.StatusInternalError || !strings.Contains(res.Detail, "over this slave's own bounds") || len(c.stream(wire.StreamStdout)) != 0 {
		t.Fatalf("over the ceiling: got %+v with %d bytes of stdout, want internal_error before running", res, len(c.stream(wire.StreamStdout)))
	}
	flood.Limits.OutputBytes = 10000
	res, c = execute(t, e, flood)
	if res.Status != wire.StatusOutputLimit || len(c.stream(wire.StreamStdout)) != 10000 || res.StdoutBytes != 10000 {
		t.Fatalf("got %+v with %d bytes of stdout, want output_limit at 10000", res, len(c.stream(wire.StreamStdout)))
	}
}

func TestFileNames(t *testing.T) {
	for _, ok := range []string{"a.c", "Hello.java", "main.py", "my prog.cpp", "été.py"} {
		if err := checkFileName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	long := strings.Repeat("a", 200) + ".c"
	for _, bad := range []string{"", ".", "..", "../a.c", "a/b.c", `a\b.c`, "a\x00.c", "-o.c", "a\n.c", long, "\xff.c"} {
		if err := checkFileName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for name, ok := range map[string]bool{"Hello.java": true, "_x$1.java": true, "Été.java": true,
		"1a.java": false, "class.java": false, "hello-world.java": false, "Hello.txt": false, ".java": false} {
		if _, err := classSourceName(name, []string{".java"}); (err == nil) != ok {
			t.Errorf("javaName(%q) err %v, want ok=%v", name, err, ok)
		}
	}
}

// TestWorkBytes: the job directories' tmpfs is JobDirBytes per slot, at
// most MaxWorkBytes; a size set past the maximum or negative counts are
// refused.
func TestWorkBytes(t *testing.T) {
	for _, tc := range []struct {
		cfg  ExecConfig
		want int64
	}{
		{ExecConfig{Slots: 1}, DefaultJobDirBytes},
		{ExecConfig{Slots: 64}, 64 * DefaultJobDirBytes},
		{ExecConfig{Slots: 4, JobDirBytes: 1 << 20}, 4 << 20},
		{ExecConfig{Slots: 1 << 20}, MaxWorkBytes},
		{ExecConfig{Slots: 3, JobDirBytes: 1 << 62}, MaxWorkBytes},
		{ExecConfig{Slots: 64, WorkBytes: 1 << 20}, 1 << 20},
	} {
		if got, err := workBytes(tc.cfg); err != nil || got != tc.want {
			t.Errorf("%+v: %d, %v; want %d", tc.cfg, got, err, tc.want)
		}
	}
	for _, cfg := range []ExecConfig{{WorkBytes: MaxWorkBytes + 1}, {Slots: -1}, {JobDirBytes: -1}} {
		if _, err := workBytes(cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if _, err := NewExecutor(ExecConfig{WorkRoot: t.TempDir(), Runner: &sandbox.Plain{}, WorkBytes: MaxWorkBytes + 1}); err == nil {
		t.Error("NewExecutor took a tmpfs past MaxWorkBytes")
	}
}
