package sandbox

import (
	"bytes"
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
// letting the copy go the init makes it load the job's syscall filter (on
// top of the sandbox filter it inherited; the injected calls run the
// vDSO's `syscall` instruction, see inject_linux_amd64.go), puts back its
// registers (and its entry bytes where there was no vDSO to use), applies
// the rlimits with prlimit, resets its OOM score and detaches. Both processes hold stdin, stdout and stderr only: every other
// descriptor of the init is close-on-exec.
//
// Cgroups v1. A new task starts in the cgroups of the thread that forked
// it, so the fork thread joins the slot's memory and pids groups itself
// right before it forks the launcher, by writing "0" to their "tasks"
// files (the host opened them; the kernel checks the opener's
// credentials), and goes back to the init's own groups right after (their
// "tasks" files, passed by the host too): the launcher and its copy are
// born in the slot's groups, and nothing of the job is ever moved. A
// thread that moves itself is a migration without the global threadgroup
// lock, whose write side waits for an RCU grace period: moving the copy by
// its pid took 10.4-10.7 ms of a 12.5 ms start when the machine ran
// something else between two jobs (docs/performance.md, "init-cgroup").
// While the thread is there:
//   - memory: user pages are charged to the memory cgroup of the mm's
//     owner, the init's thread group leader, which never moves (loop keeps
//     the fork thread off it), so no page of the init is charged to the
//     job; only kernel objects the thread allocates in that window are:
//     the launcher's task and stack, the job's anyway. The OOM killer of
//     a group looks at thread group leaders only, so it cannot pick the
//     init even then.
//   - pids: the thread counts while it forks the launcher, which is
//     bounded there (pids.max is the job's limit + 1, see setLimits).
//   - the thread is back as soon as the launcher's exec is under way,
//     before the launcher is made to fork, so the job is never released
//     while a thread of the init is in its groups (and the init's kills,
//     kill(-1) in its PID namespace, never reach its own threads); if it
//     cannot go back, the init kills everything, reports the error and
//     serves no more job (the host destroys the sandbox).
// Where the kernel or the host does not allow this (probeSelfJoin, at the
// init's start), the init moves the copy by its pid instead (see launch)
// and says why in its ready message ([Capabilities]).

var (
	// errStuck: the fork thread could not go back to the init's own
	// cgroups; the init must not start another job.
	errStuck = errors.New("sandbox: the fork thread could not leave the job's cgroups")
	// errJoin: the fork thread could not join the slot's cgroups (and is
	// back in the init's).
	errJoin = errors.New("sandbox: cgroup join")
)

// forkLauncher forks and execs the launcher; with selfJoin the fork thread
// is in the slot's v1 cgroups for the fork only. An error wrapping errJoin
// or errStuck is the sandbox's, any other the job's (exec failed); after
// errStuck r.broken is set.
func (r *jobRunner) forkLauncher(path string, argv []string, attr *syscall.ProcAttr) (int, error) {
	if !r.selfJoin {
		return syscall.ForkExec(path, argv, attr)
	}
	t0 := time.Now()
	err := moveThread(r.cgTasks)
	t1 := time.Now()
	pid := 0
	if err == nil {
		pid, err = syscall.ForkExec(path, argv, attr)
	} else {
		err = fmt.Errorf("%w: %v", errJoin, err)
	}
	t2 := time.Now()
	if berr := moveThread(r.cgHome); berr != nil {
		r.broken = true
		return pid, fmt.Errorf("%w: %v", errStuck, berr)
	}
	r.joinNs = int64(t1.Sub(t0) + time.Since(t2))
	return pid, err
}

// moveThread moves the calling thread, and it alone ("0" in a v1 "tasks"
// file), into the groups of the "tasks" files fds; it tries every one and
// returns the first error.
func moveThread(fds []int) error {
	var first error
	for _, fd := range fds {
		if _, err := unix.Write(fd, []byte{'0'}); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// probeSelfJoin moves the fork thread into the slot's groups and back
// once, checking in /proc that it moved alone and came back to the groups
// of the init's leader. An error wrapping errStuck means it did not come
// back; any other, that jobs must join by pid.
func (r *jobRunner) probeSelfJoin() error {
	lead, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return fmt.Errorf("cgroup self-join probe: %w", err)
	}
	if own, _ := os.ReadFile("/proc/thread-self/cgroup"); !bytes.Equal(own, lead) {
		return errors.New("cgroup self-join probe: the fork thread is not in the init's groups")
	}
	if err := moveThread(r.cgTasks); err != nil {
		if berr := moveThread(r.cgHome); berr != nil {
			return fmt.Errorf("%w: %v", errStuck, berr)
		}
		return fmt.Errorf("cgroup self-join probe: joining the slot's groups: %w", err)
	}
	in, _ := os.ReadFile("/proc/thread-self/cgroup")
	leadIn, _ := os.ReadFile("/proc/self/cgroup")
	berr := moveThread(r.cgHome)
	back, _ := os.ReadFile("/proc/thread-self/cgroup")
	if berr == nil && !bytes.Equal(back, lead) {
		berr = errors.New("not back in its leader's groups")
	}
	if berr != nil {
		return fmt.Errorf("%w: %v (thread in %q, leader in %q)", errStuck, berr, back, lead)
	}
	if bytes.Equal(in, lead) || !bytes.Equal(leadIn, lead) {
		return fmt.Errorf("cgroup self-join probe: writing 0 to the slot's tasks files did not move the writing thread alone (thread in %q, init in %q)", in, leadIn)
	}
	return nil
}

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
	// The words above the stack pointer: argc, argv, envp and their
	// NULLs, a script's interpreter and its arguments, the auxiliary
	// vector (~25 pairs on Linux 6).
	t, err := borrow(pid, r.vdsoOff, 4+len(m.Argv)+len(m.Env)+8+2*48)
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
	if !r.selfJoin && len(r.cgTasks) > 0 {
		// v1 fallback: move the copy into the slot's groups by its pid. It
		// has run nothing yet, so nothing of it is charged elsewhere but
		// its page tables. Moving another task is a migration under the
		// global threadgroup lock, which can wait for an RCU grace period
		// (wall time, no CPU): see "init-cgroup" in docs/performance.md.
		cpid := []byte(strconv.Itoa(child))
		joinStart := time.Now()
		for _, fd := range r.cgTasks {
			if _, err := unix.Write(fd, cpid); err != nil {
				return child, fmt.Errorf("join cgroup: %w", err)
			}
		}
		r.joinNs = int64(time.Since(joinStart))
	}
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
