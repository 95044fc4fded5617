//go:build linux

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// gateScript holds the shell until fd 3 yields a line, then becomes the
// program with fd 3 closed. See [Plain].
const gateScript = `read x <&3 && exec "$@" 3<&-`

// Run starts spec and waits for it and its process group. It returns ctx's
// error, with the outcome so far, when ctx ended the run.
func (p *Plain) Run(ctx context.Context, spec Spec) (Outcome, error) {
	if len(spec.Argv) == 0 || spec.Dir == "" {
		return Outcome{}, errors.New("sandbox: spec needs Argv and Dir")
	}
	if err := checkFiles(spec.Files); err != nil {
		return Outcome{}, err
	}
	if err := putFiles(spec.Dir, spec.Files); err != nil {
		return Outcome{}, err
	}
	prog, err := lookProgram(spec.Argv[0], spec.Dir, spec.Env)
	if err != nil {
		return Outcome{}, err
	}
	pr, err := newPlainRun(p, spec, prog)
	if err != nil {
		return Outcome{}, err
	}
	return pr.run(ctx)
}

// plainRun is one process started by Plain.
type plainRun struct {
	p      *Plain
	spec   Spec
	cmd    *exec.Cmd
	outR   [2]*os.File // stdout, stderr read ends
	outW   [2]*os.File
	gateW  *os.File
	gateR  *os.File
	cap    outputCap
	mu     sync.Mutex // guards reaped against a late killGroup
	reaped bool

	hwm        int64 // highest VmHWM sampled from the running process, KiB
	spawnerKiB int64 // this process's VmHWM when the child started, KiB
}

func newPlainRun(p *Plain, spec Spec, prog string) (*plainRun, error) {
	pr := &plainRun{p: p, spec: spec}
	var files []*os.File
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("sandbox: pipe: %w", err)
		}
		files = append(files, r, w)
	}
	pr.outR = [2]*os.File{files[0], files[2]}
	pr.outW = [2]*os.File{files[1], files[3]}
	pr.gateR, pr.gateW = files[4], files[5]
	env := spec.Env
	if env == nil {
		env = []string{} // nil would inherit the slave's environment
	}
	sh := p.shell()
	pr.cmd = &exec.Cmd{
		Path:        sh,
		Args:        append([]string{sh, "-c", gateScript, "kiln-plain", prog}, spec.Argv[1:]...),
		Env:         env,
		Dir:         spec.Dir,
		Stdin:       spec.Stdin,
		Stdout:      pr.outW[0],
		Stderr:      pr.outW[1],
		ExtraFiles:  []*os.File{pr.gateR},
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   p.grace(),
	}
	pr.cap = outputCap{limit: spec.Limits.OutputBytes, onExceed: pr.killGroup}
	return pr, nil
}

func (pr *plainRun) run(ctx context.Context) (Outcome, error) {
	if err := startWithDefaultSlack(pr.cmd); err != nil {
		closeAll([]*os.File{pr.outR[0], pr.outR[1], pr.outW[0], pr.outW[1], pr.gateR, pr.gateW})
		return Outcome{}, fmt.Errorf("sandbox: start %s: %w", pr.spec.Argv[0], err)
	}
	closeAll([]*os.File{pr.outW[0], pr.outW[1], pr.gateR})
	var pumps sync.WaitGroup
	for i, w := range []io.Writer{pr.spec.Stdout, pr.spec.Stderr} {
		pumps.Go(func() { pr.cap.pump(i, pr.outR[i], w) })
	}
	if err := setRlimits(pr.cmd.Process.Pid, pr.spec.Limits); err != nil {
		pr.gateW.Close() // the gate exits without running the program
		pr.finish(&pumps)
		return Outcome{}, err
	}
	var timedOut, cancelled atomic.Bool
	start := time.Now()
	pr.spawnerKiB = hwmKiB("self")
	gateKiB := hwmKiB(strconv.Itoa(pr.cmd.Process.Pid)) // the waiting shell: a floor
	_, werr := pr.gateW.Write([]byte("\n"))
	pr.gateW.Close()
	if werr != nil {
		pr.killGroup()
		pr.finish(&pumps)
		return Outcome{}, fmt.Errorf("sandbox: release gate: %w", werr)
	}
	var timer *time.Timer
	if d := pr.spec.Limits.Wall; d > 0 {
		timer = time.AfterFunc(d, func() { timedOut.Store(true); pr.killGroup() })
	}
	stop := context.AfterFunc(ctx, func() { cancelled.Store(true); pr.killGroup() })
	sampled := make(chan int64, 1)
	exited := make(chan struct{})
	go func() { sampled <- max(gateKiB, sampleHWM(pr.cmd.Process.Pid, exited)) }()
	waitExited(pr.cmd.Process.Pid)
	wall := time.Since(start)
	close(exited)
	pr.hwm = <-sampled
	if timer != nil {
		timer.Stop()
	}
	stop()
	pr.killGroup() // leftovers of the main process die with it
	state := pr.finish(&pumps)
	out := pr.outcome(state, wall, timedOut.Load())
	if cancelled.Load() {
		return out, ctx.Err()
	}
	if state == nil {
		return out, errors.New("sandbox: lost the process state")
	}
	return out, nil
}

// finish reaps the main process, drains or abandons the output pipes and
// waits (bounded) for the process group to empty.
func (pr *plainRun) finish(pumps *sync.WaitGroup) *os.ProcessState {
	_ = pr.cmd.Wait() // exit status is read from ProcessState
	pr.mu.Lock()
	pr.reaped = true
	pr.mu.Unlock()
	done := make(chan struct{})
	go func() { pumps.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(pr.p.grace()):
		// Something outside the group (setsid) still holds the pipes.
		closeAll(pr.outR[:])
		<-done
	}
	closeAll(pr.outR[:])
	waitGroupGone(pr.cmd.Process.Pid, pr.p.grace())
	return pr.cmd.ProcessState
}

// killGroup sends SIGKILL to the whole process group, unless the leader was
// already reaped (its pid could then name someone else's group).
func (pr *plainRun) killGroup() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if !pr.reaped {
		_ = syscall.Kill(-pr.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (pr *plainRun) outcome(st *os.ProcessState, wall time.Duration, timedOut bool) Outcome {
	out := Outcome{ExitCode: -1, Wall: wall}
	pr.cap.mu.Lock()
	out.OutputExceeded = pr.cap.exceeded
	out.StdoutBytes, out.StderrBytes = pr.cap.counts[0], pr.cap.counts[1]
	pr.cap.mu.Unlock()
	if st == nil {
		return out
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok {
		if ws.Signaled() {
			out.Signal = int(ws.Signal())
		} else {
			out.ExitCode = ws.ExitStatus()
		}
	}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		out.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		out.PeakMemoryKiB = pr.hwm
		if ru.Maxrss > pr.spawnerKiB { // KiB on Linux; see sampleHWM
			out.PeakMemoryKiB = max(out.PeakMemoryKiB, ru.Maxrss)
		}
	}
	cpuLimit := pr.spec.Limits.CPU
	out.TimedOut = timedOut || out.Signal == int(syscall.SIGXCPU) ||
		(cpuLimit > 0 && out.CPU >= cpuLimit)
	return out
}

// sampleHWM polls the VmHWM of pid every few milliseconds until exited is
// closed and returns the highest value seen, in KiB.
//
// wait4's ru_maxrss alone is wrong for children of a Go process: Go spawns
// with vfork, and the first exec folds the parent's own high-water mark
// into the child's maxrss. So Plain trusts ru_maxrss only when it is above
// the slave's own VmHWM (it then must be the program's) and otherwise uses
// these samples, which can miss a peak reached in the last few
// milliseconds before exit.
func sampleHWM(pid int, exited <-chan struct{}) int64 {
	proc := strconv.Itoa(pid)
	peak := hwmKiB(proc)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-exited:
			return peak
		case <-t.C:
			peak = max(peak, hwmKiB(proc))
		}
	}
}

// hwmKiB reads VmHWM from /proc/<pid>/status; 0 when unavailable.
func hwmKiB(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// waitExited blocks until pid has exited, without reaping it, so that its
// process group id stays reserved while the group is killed.
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// waitGroupGone polls until no live (non-zombie) process is left in process
// group pgid, or grace has passed.
func waitGroupGone(pgid int, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		time.Sleep(5 * time.Millisecond)
	}
}

// groupAlive reports whether a process of group pgid is alive. Killed
// orphans stay zombies when init does not reap them: those count as dead.
func groupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err == syscall.ESRCH {
		return false
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		state, pg, ok := procStat(e.Name())
		if ok && pg == pgid && state != "Z" && state != "X" {
			return true
		}
	}
	return false
}

// procStat returns the state and process group of /proc/<pid>/stat.
func procStat(pid string) (state string, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces and parens
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return "", 0, false
	}
	pg, err := strconv.Atoi(f[2])
	return f[0], pg, err == nil
}

// setRlimits applies l to pid with prlimit(2), never above the current hard
// limits. RLIMIT_NPROC is best effort.
func setRlimits(pid int, l Limits) error {
	set := func(res int, v uint64) error {
		var old unix.Rlimit
		if err := unix.Prlimit(pid, res, nil, &old); err != nil {
			return err
		}
		nl := unix.Rlimit{Cur: min(v, old.Max), Max: min(v, old.Max)}
		if res == unix.RLIMIT_CPU {
			nl.Max = min(v+1, old.Max) // SIGXCPU at the soft limit, SIGKILL a second later
		}
		return unix.Prlimit(pid, res, &nl, nil)
	}
	var lims [][2]uint64
	if l.CPU > 0 {
		lims = append(lims, [2]uint64{unix.RLIMIT_CPU, uint64((l.CPU + time.Second - 1) / time.Second)})
	}
	if l.MemoryBytes > 0 && !l.NoAddressSpaceLimit {
		lims = append(lims, [2]uint64{unix.RLIMIT_AS, uint64(l.MemoryBytes)})
	}
	if l.FileBytes > 0 {
		lims = append(lims, [2]uint64{unix.RLIMIT_FSIZE, uint64(l.FileBytes)})
	}
	if l.OpenFiles > 0 {
		lims = append(lims, [2]uint64{unix.RLIMIT_NOFILE, uint64(l.OpenFiles)})
	}
	lims = append(lims, [2]uint64{unix.RLIMIT_CORE, 0})
	for _, rl := range lims {
		if err := set(int(rl[0]), rl[1]); err != nil {
			return fmt.Errorf("sandbox: prlimit %d on %d: %w", rl[0], pid, err)
		}
	}
	if l.Procs > 0 {
		_ = set(unix.RLIMIT_NPROC, uint64(l.Procs))
	}
	return nil
}

// lookProgram resolves argv0 the way the program's own environment would:
// relative paths against dir, bare names against the PATH in env.
func lookProgram(argv0, dir string, env []string) (string, error) {
	if strings.Contains(argv0, "/") {
		if !filepath.IsAbs(argv0) {
			argv0 = filepath.Join(dir, argv0)
		}
		return argv0, nil
	}
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			continue
		}
		f := filepath.Join(d, argv0)
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", fmt.Errorf("sandbox: %q not found in the spec's PATH %q", argv0, path)
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// putFiles writes files into dir as new files (Spec.Files).
func putFiles(dir string, files []File) error {
	if len(files) == 0 {
		return nil
	}
	d, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	for _, f := range files {
		if err := createFile(d, f, -1, -1, nil); err != nil {
			return fmt.Errorf("sandbox: write %s: %w", f.Name, err)
		}
	}
	return nil
}

// startWithDefaultSlack starts cmd from the calling goroutine's thread,
// locked, with jobTimerSlack for the fork: the program inherits the
// kernel's default timer slack whatever the slave's threads have (as a
// strict job does from its init's fork thread).
func startWithDefaultSlack(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if old, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err == nil && old != int(jobTimerSlack) {
		unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(jobTimerSlack), 0, 0, 0)
		defer unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(old), 0, 0, 0)
	}
	return cmd.Start()
}
