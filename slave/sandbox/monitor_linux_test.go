package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// warmOneInit returns a strict runner with one sandbox made ahead, and
// the pid of that sandbox's init, which the next Run uses.
func warmOneInit(t *testing.T) (*Strict, int) {
	t.Helper()
	r := newStrictT(t)
	if err := r.Warm(1); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r, r.idle[0].cmd.Process.Pid
}

// TestInitQuietWhileJobRuns checks that the init's threads leave a
// running job's CPUs alone: while a job sleeps, they wake at most a few
// times per timer tick in all (the fork thread waits in wait4, the Go
// runtime's monitor with monitorSlack of timer slack). With the monitor
// at the default slack it woke every ~70 µs for the first milliseconds of
// each job, preempting the job on its CPU (6.5 times per Python job:
// docs/performance.md, "Python in the sandbox").
func TestInitQuietWhileJobRuns(t *testing.T) {
	r, pid := warmOneInit(t)
	done := make(chan error, 1)
	go func() {
		o, err := r.Run(context.Background(), Spec{Argv: []string{"/bin/sleep", "0.4"}, Dir: t.TempDir(), Limits: defaultLimits()})
		if err == nil && o.ExitCode != 0 {
			err = fmt.Errorf("exit %d", o.ExitCode)
		}
		done <- err
	}()
	// Wait for the job itself (untraced and asleep: the launcher is traced).
	deadline := time.Now().Add(5 * time.Second)
	for !jobSleeping(pid) {
		if time.Now().After(deadline) {
			t.Fatal("never saw the job running")
		}
		time.Sleep(200 * time.Microsecond)
	}
	before := switches(t, pid)
	time.Sleep(200 * time.Millisecond)
	running := jobSleeping(pid)
	after := switches(t, pid)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !running {
		t.Fatal("the job ended before the end of the measure")
	}
	// 200 ms: a monitor at 4 ms of slack wakes ~3 times before it takes
	// the fork thread's P back and sleeps (0-5 switches in all here); at
	// the default slack it polled every ~0.1 ms until then, and parked on
	// SIGCHLD the init switched 25-32 times.
	if n := after - before; n > 15 {
		t.Errorf("the init's threads switched %d times in 200 ms while the job slept", n)
	} else {
		t.Logf("the init's threads switched %d times in 200 ms while the job slept", n)
	}
}

// jobSleeping reports whether the init pid has a child that is not
// traced and asleep: the job, once released.
func jobSleeping(pid int) bool {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, c := range strings.Fields(string(b)) {
			st, _ := os.ReadFile("/proc/" + c + "/status")
			if strings.Contains(string(st), "\nTracerPid:\t0\n") && strings.Contains(string(st), "\nState:\tS") {
				return true
			}
		}
	}
	return false
}

// switches sums the context switches of every thread of pid.
func switches(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		b, _ := os.ReadFile(filepath.Join(fmt.Sprintf("/proc/%d/task", pid), task.Name(), "status"))
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				n += c
			}
		}
	}
	return n
}

// TestInitQuietPerJob bounds the wake-ups of the init's threads per
// short job: the fork thread's own waits (the run message, the
// launcher's stops, the job's exit) and little else. Parked on a SIGCHLD
// channel, the fork thread's goroutine went between threads at every
// ptrace stop, and the runtime's monitor, woken by the first system call
// after its deep sleep, polled every ~70 µs: ~40 switches per job.
func TestInitQuietPerJob(t *testing.T) {
	r, pid := warmOneInit(t)
	job := func() {
		o, err := r.Run(context.Background(), Spec{Argv: []string{"/bin/true"}, Limits: defaultLimits()})
		if err != nil || o.ExitCode != 0 {
			t.Fatalf("%+v %v", o, err)
		}
	}
	for range 3 {
		job()
	}
	const jobs = 40
	before := switches(t, pid)
	for range jobs {
		job()
	}
	per := float64(switches(t, pid)-before) / jobs
	if per > 18 {
		t.Errorf("the init's threads switched %.1f times per job", per)
	} else {
		t.Logf("the init's threads switched %.1f times per job", per)
	}
}

// TestJobTimerSlackIsTheDefault checks that a job's timer slack is the
// kernel's default, neither the monitorSlack of the init's runtime
// threads nor a larger one of the slave's threads (this test gives the
// thread that starts the sandbox 4 ms, as a slave might).
func TestJobTimerSlackIsTheDefault(t *testing.T) {
	runtime.LockOSThread() // the thread whose slack changes starts the init
	defer runtime.UnlockOSThread()
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(monitorSlack), 0, 0, 0)
	defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	r := newStrictT(t)
	if err := r.Warm(1); err != nil {
		t.Fatal(err)
	}
	want := int(jobTimerSlack)
	for range 2 { // a fresh sandbox, then a pooled one
		var out bytes.Buffer
		o, err := r.Run(context.Background(), Spec{Argv: []string{"/bin/sh", "-c", "cat /proc/self/timerslack_ns; sleep 0.01 & wait; cat /proc/self/timerslack_ns"}, Dir: t.TempDir(), Stdout: &out, Stderr: &out, Limits: defaultLimits()})
		if err != nil || o.ExitCode != 0 {
			t.Fatalf("%+v %v %s", o, err, out.String())
		}
		got := strings.Fields(out.String())
		if !slices.Equal(got, []string{strconv.Itoa(want), strconv.Itoa(want)}) {
			t.Fatalf("the job's timer slack: %q, want %d", got, want)
		}
	}
}

// TestPlainTimerSlackIsTheDefault: a Plain run started from a thread of
// the slave with 4 ms of timer slack gets the kernel's default.
func TestPlainTimerSlackIsTheDefault(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(monitorSlack), 0, 0, 0)
	defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	_, out, _ := runSh(t, "cat /proc/self/timerslack_ns", Limits{Wall: 10 * time.Second}, nil)
	if got := strings.TrimSpace(out); got != strconv.Itoa(int(jobTimerSlack)) {
		t.Fatalf("the program's timer slack: %q, want %d", got, jobTimerSlack)
	}
	if now, _ := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); now != int(monitorSlack) {
		t.Fatalf("the slave's thread's slack is %d after the start, want %d back", now, monitorSlack)
	}
}

// TestJobTextUnwritten checks that the start of a job writes nothing into
// its code: the injected system calls run the vDSO's `syscall`
// instruction, not two bytes written over the program's entry point (a
// ptrace write copies the page, leaving it private and dirty).
func TestJobTextUnwritten(t *testing.T) {
	r := newStrictT(t)
	if vdsoSyscall() < 0 {
		t.Fatal("no `syscall` instruction found in this process's vDSO")
	}
	for range 2 { // a fresh sandbox, then a pooled one
		var out, errb bytes.Buffer
		o, err := r.Run(context.Background(), Spec{Argv: []string{"/bin/sh", "-c", "cat /proc/$$/smaps"}, Dir: t.TempDir(), Stdout: &out, Stderr: &errb, Limits: defaultLimits()})
		if err != nil || o.ExitCode != 0 {
			t.Fatalf("%+v %v %s", o, err, errb.String())
		}
		code, dirty := 0, []string{}
		var mapping string
		for _, line := range strings.Split(out.String(), "\n") {
			f := strings.Fields(line)
			if len(f) >= 5 && strings.Contains(f[0], "-") && len(f[1]) == 4 {
				mapping = line
				continue
			}
			if len(f) == 3 && f[0] == "Private_Dirty:" && strings.Contains(strings.Fields(mapping + " x x")[1], "x") {
				code++
				if f[1] != "0" {
					dirty = append(dirty, mapping+": "+line)
				}
			}
		}
		if code == 0 {
			t.Fatalf("no code mapping in the job's smaps:\n%s", out.String())
		}
		if len(dirty) > 0 {
			t.Errorf("code pages of the job were written: %q", dirty)
		}
	}
}
