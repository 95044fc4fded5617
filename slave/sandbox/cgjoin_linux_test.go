package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln/internal/testenv"
)

// needV1 skips loudly (fails under CI) without cgroup v1 memory and pids.
func needV1(t *testing.T, r *Strict) {
	t.Helper()
	if r.cg.version != "v1" || r.cg.memory == "" || r.cg.pids == "" {
		testenv.Need(t, "cgroup v1 memory and pids controllers", fmt.Errorf("found %q %v", r.cg.version, r.cg.controllers()))
	}
}

// idleContainer prepares one sandbox of r and returns it (left in the pool).
func idleContainer(t *testing.T, r *Strict) *container {
	t.Helper()
	if err := r.Warm(1); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.idle[len(r.idle)-1]
}

// tids lists the thread ids in a v1 "tasks" file or of a /proc task dir.
func tids(t *testing.T, tasksFile string) []string {
	t.Helper()
	b, err := os.ReadFile(tasksFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// initThreadsHome fails unless every thread of the init is in the groups
// of its leader and none is in the slot's memory or pids group.
func initThreadsHome(t *testing.T, c *container, when string) {
	t.Helper()
	pid := strconv.Itoa(c.cmd.Process.Pid)
	lead, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		t.Fatal(err)
	}
	var threads []string
	for _, e := range ents {
		threads = append(threads, e.Name())
		b, err := os.ReadFile("/proc/" + pid + "/task/" + e.Name() + "/cgroup")
		if err != nil {
			continue // the thread ended
		}
		if string(b) != string(lead) {
			t.Errorf("%s: init thread %s is in\n%s\nnot with its leader in\n%s", when, e.Name(), b, lead)
		}
	}
	for _, dir := range []string{c.cg.memDir, c.cg.pidsDir} {
		for _, tid := range tids(t, filepath.Join(dir, "tasks")) {
			if slices.Contains(threads, tid) {
				t.Errorf("%s: init thread %s is in the slot's group %s", when, tid, dir)
			}
		}
	}
}

// TestJobsBornInSlotCgroups: on cgroup v1 the job's processes are in the
// slot's memory and pids groups, and no thread of the init is ever left
// there (before, while and after a job runs), whether the fork thread
// joins around the launcher's fork ("thread", the default) or the job's
// first process is moved by its pid ("pid", the fallback, here forced by
// giving the init no "tasks" files of its own groups).
func TestJobsBornInSlotCgroups(t *testing.T) {
	for _, mode := range []string{"thread", "pid"} {
		t.Run(mode, func(t *testing.T) {
			r := newStrictT(t)
			needV1(t, r)
			r.cg.noHome = mode == "pid"
			c := idleContainer(t, r)
			if c.join != mode {
				t.Fatalf("the init joins jobs by %q (%s), want %q", c.join, c.joinNote, mode)
			}
			if (mode == "pid") != (c.joinNote != "") {
				t.Errorf("join note %q", c.joinNote)
			}
			// Check says it, in its features or under missing.
			caps, err := r.Check(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			born := slices.Contains(caps.Features, "jobs born in their v1 cgroups")
			byPid := strings.Contains(strings.Join(caps.Missing, "; "), "by pid")
			if born != (mode == "thread") || byPid != (mode == "pid") {
				t.Errorf("Check: %s", caps)
			}
			// The job sees the paths inside the init's cgroup namespace,
			// rooted at this process's groups.
			want := map[string]string{}
			for ctl, d := range map[string][2]string{"memory": {r.cg.memory, c.cg.memDir}, "pids": {r.cg.pids, c.cg.pidsDir}} {
				rel, err := filepath.Rel(filepath.Dir(d[0]), d[1])
				if err != nil {
					t.Fatal(err)
				}
				want[ctl] = "/" + rel
			}
			initThreadsHome(t, c, "prepared")
			dir := t.TempDir()
			for i := 0; i < 3; i++ {
				res := run(t, r, dir, defaultLimits(), "", "/bin/cat", "/proc/self/cgroup")
				got := map[string]string{}
				for _, line := range strings.Split(res.stdout, "\n") {
					if f := strings.SplitN(line, ":", 3); len(f) == 3 && (f[1] == "memory" || f[1] == "pids") {
						got[f[1]] = f[2]
					}
				}
				if got["memory"] != want["memory"] || got["pids"] != want["pids"] {
					t.Fatalf("job %d in %v, want %v:\n%s", i, got, want, res.stdout)
				}
				initThreadsHome(t, c, "after job "+strconv.Itoa(i))
			}
			// While a job runs: it is in the slot's groups, the init not.
			done := make(chan error, 1)
			go func() {
				_, err := r.Run(context.Background(), Spec{Argv: []string{"/bin/sleep", "0.3"}, Dir: dir, Limits: defaultLimits()})
				done <- err
			}()
			// released: the sleep, untraced, in both of the slot's groups
			// (the fork thread passes through them while it forks the
			// launcher, before the job is released).
			released := func() bool {
				mem := tids(t, filepath.Join(c.cg.memDir, "tasks"))
				for _, tid := range tids(t, filepath.Join(c.cg.pidsDir, "tasks")) {
					comm, _ := os.ReadFile("/proc/" + tid + "/comm")
					st, _ := os.ReadFile("/proc/" + tid + "/status")
					if slices.Contains(mem, tid) && string(comm) == "sleep\n" && strings.Contains(string(st), "\nTracerPid:\t0\n") {
						return true
					}
				}
				return false
			}
			seen := false
			for deadline := time.Now().Add(5 * time.Second); !seen && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				seen = released()
			}
			if seen {
				initThreadsHome(t, c, "job running")
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !seen {
				t.Fatal("never saw the running job in the slot's groups")
			}
			initThreadsHome(t, c, "after the sleeping job")
		})
	}
}

// TestInitThatCannotLeaveServesNoJob: an init whose fork thread cannot go
// back to its own groups (here its "tasks" files are passed read-only)
// must not serve any job: the sandbox fails to start and its groups are
// removed, rather than running jobs with a thread of the init in them.
func TestInitThatCannotLeaveServesNoJob(t *testing.T) {
	r := newStrictT(t)
	needV1(t, r)
	r.cg.homeRO = true
	_, err := r.Run(context.Background(), Spec{Argv: []string{"/usr/bin/true"}, Dir: t.TempDir(), Limits: defaultLimits()})
	if err == nil || !strings.Contains(err.Error(), errStuck.Error()) {
		t.Fatalf("Run: %v, want %q", err, errStuck)
	}
	for _, d := range []string{r.cg.memory, r.cg.pids} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "slot-") {
				t.Errorf("slot group %s left in %s", e.Name(), d)
			}
		}
	}
}

// TestJobProcsBound: the job's processes stay within Limits.Procs with the
// launcher born in the slot's pids group (pids.max is the limit + 1, the
// launcher until it is reaped; RLIMIT_NPROC, the limit, counts the same
// tasks), and the bound does not keep the next job from starting.
func TestJobProcsBound(t *testing.T) {
	r := newStrictT(t)
	needV1(t, r)
	dir := t.TempDir()
	compileC(t, r, dir, `#include <stdio.h>
#include <unistd.h>
int main(void){ int n = 0; for (int i = 0; i < 64; i++) { pid_t p = fork(); if (p < 0) break; if (p == 0) { pause(); _exit(0); } n++; } printf("%d\n", n); return 0; }
`)
	c := idleContainer(t, r)
	for _, procs := range []int{1, 2, 8} {
		lim := defaultLimits()
		lim.Procs = procs
		res := run(t, r, dir, lim, "", "./main")
		n, err := strconv.Atoi(strings.TrimSpace(res.stdout))
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("procs %d: %+v %q %q", procs, res.Outcome, res.stdout, res.stderr)
		}
		// The job itself and n children; the launcher may still count.
		if n+1 > procs || n+2 < procs {
			t.Errorf("procs %d: the job made %d children", procs, n)
		}
		b, err := os.ReadFile(filepath.Join(c.cg.pidsDir, "pids.max"))
		if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(procs+1) {
			t.Errorf("procs %d: pids.max %q %v", procs, b, err)
		}
	}
	noLeftovers(t, r, "")
	normalJob(t, r)
}

// TestCgroupJoinWait is a measurement, run on demand, of the v1 cgroup
// step of a job's start (docs/performance.md, "Cgroups v1: jobs born in
// their groups"): a runner whose fork thread joins the slot's groups
// around the launcher's fork and one that moves each job's first process
// by its pid, alternated, with a bare Python run before each job (the
// pattern in which the move by pid waited for an RCU grace period):
//
//	KILN_CGROUP_JOIN=100 go test -run TestCgroupJoinWait -v ./slave/sandbox/
func TestCgroupJoinWait(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KILN_CGROUP_JOIN"))
	if n <= 0 {
		t.Skip("a measurement: set KILN_CGROUP_JOIN to the number of rounds")
	}
	dir := t.TempDir()
	writeFile(t, dir, "hello.py", "print('hello')\n")
	argv := []string{"/usr/bin/python3", "-B", "hello.py"}
	env := []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	type runner struct {
		name  string
		r     *Strict
		steps map[string]time.Duration
		rows  map[string][]float64
	}
	var rs []*runner
	for _, mode := range []string{"thread", "pid"} {
		x := &runner{name: mode, steps: map[string]time.Duration{}, rows: map[string][]float64{}}
		r, err := NewStrict(StrictConfig{Trace: func(step string, d time.Duration) { x.steps[step] = d }})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		needV1(t, r)
		r.cg.noHome = mode == "pid"
		x.r = r
		rs = append(rs, x)
	}
	bare := func() {
		if err := testCommand(dir, env, argv...); err != nil {
			t.Fatal(err)
		}
	}
	for i := -3; i < n; i++ {
		for _, x := range rs {
			bare()
			o, err := x.r.Run(context.Background(), Spec{Argv: argv, Env: env, Dir: dir, Limits: defaultLimits()})
			if err != nil || o.ExitCode != 0 {
				t.Fatalf("%s: %+v %v", x.name, o, err)
			}
			if i < 0 {
				continue
			}
			for _, s := range []string{"init-cgroup", "init-start", "await"} {
				x.rows[s] = append(x.rows[s], float64(x.steps[s])/1e6)
			}
		}
	}
	lines := []string{fmt.Sprintf("%-8s %-12s %7s %7s %7s (ms over %d jobs)", "join", "step", "p50", "p90", "mean", n)}
	for _, x := range rs {
		for _, s := range []string{"init-cgroup", "init-start", "await"} {
			l := x.rows[s]
			sort.Float64s(l)
			sum := 0.0
			for _, v := range l {
				sum += v
			}
			lines = append(lines, fmt.Sprintf("%-8s %-12s %7.2f %7.2f %7.2f", x.name, s, l[len(l)/2], l[len(l)*9/10], sum/float64(len(l))))
		}
	}
	t.Log("\n" + strings.Join(lines, "\n"))
}

// testCommand runs argv in dir with env and fails on a non-zero exit.
func testCommand(dir string, env []string, argv ...string) error {
	p, err := os.StartProcess(argv[0], argv, &os.ProcAttr{Dir: dir, Env: env})
	if err != nil {
		return err
	}
	st, err := p.Wait()
	if err == nil && !st.Success() {
		err = errors.New(st.String())
	}
	return err
}

// TestJobKilledByItsLimitWhileStarting: a job is born in its memory
// cgroup, so its launcher's exec and the fork of its copy are charged to
// the job's memory limit, which the client sets (a few hundred KiB, as low
// as it likes). The group's OOM killer then killed the launcher or the
// copy while the init was still starting it, and the init reported the
// start-up as its own failure ("job process died during start-up",
// "setregs: no such process"): Run failed, and the slave ended the job
// internal_error against itself, so a client with a tiny limit had the
// master strike every slave that took the job. Such a death is the job's
// verdict (memory exceeded), and the sandbox serves the next job.
func TestJobKilledByItsLimitWhileStarting(t *testing.T) {
	r := newStrictT(t)
	ooms := 0
	for kib := int64(4); kib <= 1024; kib += 12 {
		lim := defaultLimits()
		lim.MemoryBytes = kib << 10
		var so, se bytes.Buffer
		spec := Spec{Argv: []string{"/bin/true"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir(), Stdout: &so, Stderr: &se, Limits: lim, Keep: keepAll}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := r.Run(ctx, spec)
		cancel()
		if err != nil && !errors.Is(err, ErrStart) {
			t.Fatalf("memory limit %d KiB: the sandbox's error, not the job's verdict: %v", kib, err)
		}
		if err == nil && out.MemoryExceeded {
			ooms++
		}
		if err == nil && !out.MemoryExceeded && (out.ExitCode != 0 || out.Signal != 0) {
			t.Fatalf("memory limit %d KiB: %+v without memory exceeded", kib, out)
		}
	}
	t.Logf("%d runs over their limit", ooms)
	normalJob(t, r)
}
