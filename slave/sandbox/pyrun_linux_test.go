package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln/internal/testenv"

	"golang.org/x/sys/unix"
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

// TestInitNotInWait4WhileJobRuns checks that no thread of the init sits
// in a blocking wait4 while its job runs: a goroutine in a system call
// keeps its P, and while one does, the Go runtime's monitor thread polls
// every 20 µs to 10 ms, each wake-up preempting the job on its CPU (6.5
// preemptions of each Python job, against 1.2 with the fork thread parked
// on SIGCHLD: docs/performance.md, "Python in the sandbox").
func TestInitNotInWait4WhileJobRuns(t *testing.T) {
	r := newStrictT(t)
	if err := r.Warm(1); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	pid := r.idle[0].cmd.Process.Pid
	r.mu.Unlock()
	proc := fmt.Sprintf("/proc/%d/task", pid)
	// threads returns the first field of each thread's /proc syscall file
	// and the comms of the init's children.
	threads := func() (calls, children []string) {
		tasks, _ := os.ReadDir(proc)
		for _, task := range tasks {
			if b, err := os.ReadFile(filepath.Join(proc, task.Name(), "syscall")); err == nil {
				calls = append(calls, strings.Fields(string(b) + " ?")[0])
			}
			b, _ := os.ReadFile(filepath.Join(proc, task.Name(), "children"))
			for _, c := range strings.Fields(string(b)) {
				// The launcher is a child too, traced, and its comm is
				// the job's: only an untraced, sleeping child is the job.
				st, _ := os.ReadFile("/proc/" + c + "/status")
				comm, _ := os.ReadFile("/proc/" + c + "/comm")
				if strings.Contains(string(st), "\nTracerPid:\t0\n") && strings.Contains(string(st), "\nState:\tS") {
					comm = append(comm, "(running)"...)
				}
				children = append(children, strings.TrimSpace(string(comm)))
			}
		}
		return calls, children
	}
	done := make(chan error, 1)
	go func() {
		o, err := r.Run(context.Background(), Spec{Argv: []string{"/bin/sleep", "0.3"}, Dir: t.TempDir(), Limits: defaultLimits()})
		if err == nil && o.ExitCode != 0 {
			err = fmt.Errorf("exit %d", o.ExitCode)
		}
		done <- err
	}()
	samples, wait4 := 0, strconv.Itoa(int(unix.SYS_WAIT4))
	for deadline := time.Now().Add(5 * time.Second); samples < 50 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		calls, children := threads()
		if !slices.Equal(children, []string{"sleep\n(running)"}) {
			continue // not started yet, the launcher not reaped yet, or ended
		}
		samples++
		if slices.Contains(calls, wait4) {
			t.Errorf("a thread of the init is in wait4 while its job runs (threads' system calls: %v)", calls)
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if samples == 0 {
		t.Fatal("never saw the job running")
	}
}
