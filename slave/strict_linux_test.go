package slave

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// newStrictRunner returns a strict sandbox closed with the test. Without
// root it skips loudly (fails under CI=true).
func newStrictRunner(t *testing.T) *sandbox.Strict {
	t.Helper()
	testenv.Root(t, "the strict sandbox (uid mappings, cgroups)")
	r, err := sandbox.NewStrict(sandbox.StrictConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// watchRunner records, after each step, the allocated bytes and names in
// the job directory on the host.
type watchRunner struct {
	sandbox.Runner
	mu    sync.Mutex
	steps []stepView
}

type stepView struct {
	bytes int64
	names []string
	dir   string   // the spec's Dir
	files []string // names of the spec's Files
}

func (w *watchRunner) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Outcome, error) {
	out, err := w.Runner.Run(ctx, spec)
	v := stepView{dir: spec.Dir}
	for _, f := range spec.Files {
		v.files = append(v.files, f.Name)
	}
	ents, _ := os.ReadDir(spec.Dir)
	for _, e := range ents {
		v.names = append(v.names, e.Name())
		if fi, err := os.Lstat(filepath.Join(spec.Dir, e.Name())); err == nil {
			v.bytes += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
	}
	w.mu.Lock()
	w.steps = append(w.steps, v)
	w.mu.Unlock()
	return out, err
}

func (w *watchRunner) last() stepView {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.steps[len(w.steps)-1]
}

// A job that leaves a 60 MiB sparse file and 30 hard links in /w gets its
// own verdict, and the slave copies none of it back: nothing of the run
// step is returned to anyone.
func TestStrictRunStepCopiesNothingBack(t *testing.T) {
	needLang(t, wire.LangC)
	w := &watchRunner{Runner: newStrictRunner(t)}
	e, _ := newExecutor(t, w)
	src := []byte(`#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void){
	int fd = open("big", O_WRONLY|O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 60<<20) != 0 || pwrite(fd, "x", 1, 30<<20) != 1) return 1;
	close(fd);
	char name[32];
	for (int i = 0; i < 30; i++) { snprintf(name, sizeof name, "link%d", i); if (link("big", name) != 0) return 2; }
	return 7;
}
`)
	start := time.Now()
	res, _ := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: src})
	if res.Status != wire.StatusRuntimeError || res.ExitCode != 7 {
		t.Fatalf("%+v", res)
	}
	if v := w.last(); len(v.names) != 2 || v.bytes > 1<<20 {
		t.Fatalf("job dir after the run step: %d bytes, %v", v.bytes, v.names)
	}
	t.Logf("compile and run: %v", time.Since(start))
	// Run again from the cache: the program goes from memory into /w, with
	// no job directory on the slave at all.
	res, _ = execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: src})
	if res.Status != wire.StatusRuntimeError || res.ExitCode != 7 || !res.Cached {
		t.Fatalf("cached: %+v", res)
	}
	if v := w.last(); v.dir != "" || strings.Join(v.files, " ") != "a.c main" {
		t.Fatalf("cached run: dir %q, files %v", v.dir, v.files)
	}
}

// The compile step keeps the program and nothing else the compiler (or
// the source, through it) left in /w.
func TestStrictCompileKeepsOnlyArtifacts(t *testing.T) {
	needLang(t, wire.LangC)
	w := &watchRunner{Runner: newStrictRunner(t)}
	e, _ := newExecutor(t, w)
	res, c := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: []byte("#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n")})
	if res.Status != wire.StatusOK || c.stream(wire.StreamStdout) != "hi\n" {
		t.Fatalf("%+v %q", res, res.CompileOutput)
	}
	if v := w.steps[0]; len(v.names) != 2 || v.names[0] != "a.c" || v.names[1] != "main" {
		t.Fatalf("job dir after compiling: %v", v.names)
	}
}

// More than 10 000 files, or directories deeper than 16 levels, in /w
// used to turn the program's verdict into internal_error.
func TestStrictFilesAndDepthKeepTheVerdict(t *testing.T) {
	needLang(t, wire.LangC)
	e, _ := newExecutor(t, newStrictRunner(t))
	prog := func(tail string) []byte {
		return []byte(`#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void){
	char name[64];
	for (int i = 0; i < 10001; i++) { snprintf(name, sizeof name, "f%05d", i); FILE *f = fopen(name, "w"); if (!f) return 1; fclose(f); }
	for (int i = 0; i < 20; i++) { if (mkdir("d", 0755) != 0 || chdir("d") != 0) return 2; }
	` + tail + `
}
`)
	}
	res, _ := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: prog("return 7;")})
	if res.Status != wire.StatusRuntimeError || res.ExitCode != 7 {
		t.Fatalf("exit 7: %+v", res)
	}
	res, _ = execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: prog("for (;;);"), Limits: wire.JobLimits{TimeMs: 500}})
	if res.Status != wire.StatusTimeLimit {
		t.Fatalf("time limit: %+v", res)
	}
}

// javac's classes are all kept, nested and secondary ones included.
func TestStrictJavaKeepsClasses(t *testing.T) {
	needLang(t, wire.LangJava)
	e, _ := newExecutor(t, newStrictRunner(t))
	src := []byte(`class Other { static int v() { return 41; } }
public class Two { interface F { int f(); } public static void main(String[] a) { F g = new F() { public int f() { return Other.v() + 1; } }; System.out.println(g.f()); } }`)
	res, c := execute(t, e, Job{Language: wire.LangJava, FileName: "Two.java", Source: src})
	if res.Status != wire.StatusOK || c.stream(wire.StreamStdout) != "42\n" {
		t.Fatalf("%+v %q %q", res, c.stream(wire.StreamStderr), res.CompileOutput)
	}
}
