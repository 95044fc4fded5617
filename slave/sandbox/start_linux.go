package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How a job starts. The fork thread forks and execs the program with
// PTRACE_TRACEME, so the kernel stops it right after execve, before its
// first instruction. This first process, the launcher, never runs code of
// its own: the init makes it fork once (see tracee) and kills it. The copy,
// the job's real first process, starts from the very same point with a
// fresh resident set and fresh rusage: a process made by exec from the
// init's vfork child inherits, in ru_maxrss, the peak of the init's whole
// address space (the figure of finding 6 was the init's 12 MiB). Before
// letting the copy go the init moves it into the slot's cgroups (v1: by
// writing its pid to the "tasks" files the host opened; the init's threads
// never join them, so the memory cgroup holds the job's processes only and
// its OOM killer can only pick one of them), makes it load the job's
// syscall filter (on top of the sandbox filter it inherited), puts back its
// registers and entry bytes, applies the rlimits with prlimit, resets its
// OOM score and detaches. Both processes hold stdin, stdout and stderr
// only: every other descriptor of the init is close-on-exec.

// errDied means the job's process died (it was killed) during start-up.
var errDied = errors.New("sandbox: job process died during start-up")

// startJob turns the launcher pid, just forked, into a running job and
// returns the job's first process. exited is true when the launcher ended
// before it stopped (status is then its wait status). The launcher is
// killed and left for the job's reaping, which counts its CPU time (its
// exec is the program's) but not its resident set.
func (r *jobRunner) startJob(pid int, m *runMsg, acc *usage) (job int, status unix.WaitStatus, exited bool, err error) {
	var ru unix.Rusage
	acc.launcher = pid
	if status, err = waitPidRusage(pid, &ru); err != nil {
		return 0, status, true, fmt.Errorf("wait for exec: %w", err)
	}
	if !status.Stopped() {
		acc.addCPU(&ru)
		return 0, status, true, nil
	}
	var cpus unix.CPUSet
	job, err = r.launch(pid, m, &cpus)
	unix.Kill(pid, unix.SIGKILL)
	if err != nil {
		if job > 0 {
			unix.Kill(job, unix.SIGKILL)
		}
		return 0, status, true, err
	}
	if err := r.release(job, m.Rlimits, &cpus); err != nil {
		unix.Kill(job, unix.SIGKILL)
		return 0, status, true, err
	}
	return job, status, false, nil
}

// launch makes the stopped launcher fork the job's first process and
// prepares it; the launcher is left stopped. cpus receives the CPU set
// the job gets back at its release.
func (r *jobRunner) launch(pid int, m *runMsg, cpus *unix.CPUSet) (int, error) {
	if err := unix.PtraceSetOptions(pid, unix.PTRACE_O_TRACEFORK|unix.PTRACE_O_EXITKILL); err != nil {
		return 0, fmt.Errorf("ptrace options: %w", err)
	}
	t, err := borrow(pid)
	if err != nil {
		return 0, err
	}
	// The copy is a new task; left to the scheduler it may start on the
	// other CPU, behind whatever runs there (on a loaded machine this cost
	// ~2 ms a job). Pinned to this thread's CPU, it runs as soon as the
	// init waits for it, and so does each system call injected into it
	// (the cgroup move and the filter); it gets the launcher's CPU set back
	// at its release, before it runs anything of its own.
	if err := unix.SchedGetaffinity(pid, cpus); err != nil {
		return 0, fmt.Errorf("affinity: %w", err)
	}
	if cpu, ok := currentCPU(); ok {
		var here unix.CPUSet
		here.Set(cpu)
		unix.SchedSetaffinity(pid, &here)
	}
	child, err := t.fork()
	if err != nil {
		return child, err
	}
	c := t.adopt(child)
	// v1: move the copy into the slot's groups, whose "tasks" files the
	// host opened (the kernel checks the opener's credentials). It has run
	// nothing yet, so nothing of it is charged elsewhere but its page tables.
	// Each join is a cgroup migration, which can wait for an RCU grace
	// period (wall time, no CPU): see "init-cgroup" in docs/performance.md.
	cpid := []byte(strconv.Itoa(child))
	joinStart := time.Now()
	for _, fd := range r.cgTasks {
		if _, err := unix.Write(fd, cpid); err != nil {
			return child, fmt.Errorf("join cgroup: %w", err)
		}
	}
	r.joinNs = int64(time.Since(joinStart))
	if !m.NoFilter {
		if len(r.jobFilter) == 0 {
			return child, errors.New("no job syscall filter")
		}
		if err := c.installFilter(r.jobFilter); err != nil {
			return child, err
		}
	}
	return child, c.restore()
}

// release applies the rlimits to the stopped job process, resets its OOM
// score and its CPU set, and lets it go.
func (r *jobRunner) release(pid int, limits []rlimitSpec, cpus *unix.CPUSet) error {
	for _, l := range limits {
		lim := unix.Rlimit{Cur: l.Cur, Max: l.Max}
		if err := unix.Prlimit(pid, l.Resource, &lim, nil); err != nil {
			// A limit we cannot apply must not let the job run free.
			return fmt.Errorf("rlimit %d: %w", l.Resource, err)
		}
	}
	// Where the host could make the init OOM-exempt (-1000), the job must
	// not inherit that.
	if r.oomReset {
		os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte("0"), 0)
	}
	if err := unix.SchedSetaffinity(pid, cpus); err != nil {
		return fmt.Errorf("affinity: %w", err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	return nil
}

// waitPid waits for a state change of pid (a stop included).
func waitPid(pid int) (unix.WaitStatus, error) {
	var ru unix.Rusage
	return waitPidRusage(pid, &ru)
}

func waitPidRusage(pid int, ru *unix.Rusage) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, ru)
		if err == unix.EINTR {
			continue
		}
		return ws, err
	}
}

// waitStop waits until pid stops with sig; anything else is errDied.
func waitStop(pid int, sig syscall.Signal) error {
	ws, err := waitPid(pid)
	if err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	if !ws.Stopped() || ws.StopSignal() != sig {
		return fmt.Errorf("%w (status %#x)", errDied, uint32(ws))
	}
	return nil
}

// currentCPU returns the CPU the calling thread runs on.
func currentCPU() (int, bool) {
	var cpu, node uint32
	_, _, e := unix.Syscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&cpu)), uintptr(unsafe.Pointer(&node)), 0)
	return int(cpu), e == 0
}
