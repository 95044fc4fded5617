package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln/internal/testenv"
)

// rtSource is a static timer: it forks and execs its arguments, waits, and
// prints to stderr "RT wall_us cpu_us minflt nivcsw cpus" for the child,
// from the child's fork to its reaping (getrusage of the child).
const rtSource = `#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <time.h>
#include <sched.h>
#include <sys/wait.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
	struct timespec a, b; struct rusage ru; int st; cpu_set_t cs;
	clock_gettime(CLOCK_MONOTONIC, &a);
	pid_t p = fork();
	if (p == 0) { execv(argv[1], argv + 1); _exit(127); }
	if (wait4(p, &st, 0, &ru) != p || st != 0) return 1;
	clock_gettime(CLOCK_MONOTONIC, &b);
	sched_getaffinity(0, sizeof cs, &cs);
	fprintf(stderr, "RT %ld %ld %ld %ld %d\n",
		(b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000,
		(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec,
		ru.ru_minflt, ru.ru_nivcsw, CPU_COUNT(&cs));
	return 0;
}
`

// TestPythonInSandbox is a measurement, run on demand, of where the
// sandbox's cost on a Python hello world goes (docs/performance.md,
// "Python in the sandbox"). Each round, interleaved: the program bare
// under the timer with the job's environment; under the timer inside the
// sandbox, with and without the syscall filter (the program then is a
// plain fork of the timer, inside every namespace, mount, cgroup and
// rlimit of the job); and directly as the job (its "init-run" and its
// "init-cgroup", the v1 cgroup joins of its start):
//
//	KILN_PY_SANDBOX=200 go test -run TestPythonInSandbox -v ./slave/sandbox/
func TestPythonInSandbox(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KILN_PY_SANDBOX"))
	if n <= 0 {
		t.Skip("a measurement: set KILN_PY_SANDBOX to the number of rounds")
	}
	testenv.Root(t, "the strict sandbox")
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "hello.py"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "main.py", string(src))
	writeFile(t, dir, "rt.c", rtSource)
	if out, err := exec.Command("gcc", "-O2", "-static", "-o", filepath.Join(dir, "rt"), filepath.Join(dir, "rt.c")).CombinedOutput(); err != nil {
		testenv.Need(t, "gcc -static", fmt.Errorf("%v: %s", err, out))
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"} // the executor's
	python := []string{"/usr/bin/python3", "-B", "main.py"}
	timed := append([]string{"./rt"}, python...)
	steps := map[string]time.Duration{}
	on, err := NewStrict(StrictConfig{Trace: func(step string, d time.Duration) { steps[step] = d }})
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close()
	off, err := NewStrict(StrictConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	off.noFilter, off.setup.NoFilter = true, true
	rows := map[string]*[2][]float64{} // wall, cpu in ms
	add := func(name string, wall, cpu float64) {
		if rows[name] == nil {
			rows[name] = &[2][]float64{}
		}
		rows[name][0] = append(rows[name][0], wall)
		rows[name][1] = append(rows[name][1], cpu)
	}
	parse := func(name, out string) {
		i := strings.LastIndex(out, "RT ")
		if i < 0 {
			t.Fatalf("%s: no timing in %q", name, out)
		}
		f := strings.Fields(out[i:])
		w, _ := strconv.ParseFloat(f[1], 64)
		c, _ := strconv.ParseFloat(f[2], 64)
		add(name, w/1e3, c/1e3)
	}
	sandboxed := func(r *Strict, argv []string) (Outcome, string) {
		var out bytes.Buffer
		o, err := r.Run(context.Background(), Spec{Argv: argv, Env: env, Dir: dir, Stdout: &out, Stderr: &out, Limits: defaultLimits()})
		if err != nil || o.ExitCode != 0 {
			t.Fatalf("%+v %v %s", o, err, out.String())
		}
		return o, out.String()
	}
	for i := -3; i < n; i++ { // 3 rounds of warm-up
		cmd := exec.Command(timed[0], timed[1:]...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatal(err, string(out))
		}
		o, direct := sandboxed(on, python)
		_, filtered := sandboxed(on, timed)
		_, unfiltered := sandboxed(off, timed)
		if i < 0 {
			continue
		}
		parse("bare (timer, job env)", string(out))
		parse("sandbox, filter", filtered)
		parse("sandbox, no filter", unfiltered)
		_ = direct
		add("sandbox, as the job", float64(steps["init-run"])/1e6, float64(o.CPU)/1e6)
		add("  its init-start", float64(steps["init-start"])/1e6, 0)
		add("  its init-cgroup", float64(steps["init-cgroup"])/1e6, 0)
	}
	med := func(l []float64) float64 {
		l = append([]float64(nil), l...)
		sort.Float64s(l)
		return l[len(l)/2]
	}
	lines := []string{fmt.Sprintf("%-24s %9s %9s", "p50 over "+strconv.Itoa(n)+" rounds", "wall ms", "cpu ms")}
	for _, name := range []string{"bare (timer, job env)", "sandbox, filter", "sandbox, no filter", "sandbox, as the job", "  its init-start", "  its init-cgroup"} {
		lines = append(lines, fmt.Sprintf("%-24s %9.2f %9.2f", name, med(rows[name][0]), med(rows[name][1])))
	}
	t.Log("\n" + strings.Join(lines, "\n"))
}
