package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The sandbox init is this very binary, re-executed by the host as PID 1 of
// fresh user, PID, mount, network, IPC, UTS and cgroup namespaces. It builds
// a read-only root, then serves runs: for each, it attaches the per-run
// tmpfs mounts the host made, forks the program as the unprivileged job uid
// from a dedicated OS thread (no_new_privs, empty capability bounding set),
// turns it into the job while it is stopped before its first instruction
// (cgroups, syscall filter, rlimits: see start_linux.go), reaps every
// process of the job and kills the leftovers.

const (
	initEnv   = "KILN_SANDBOX_INIT"
	initArg0  = "kiln-sandbox-init"
	sockFD    = 3               // control socket
	jobsFD    = 4               // jobs socket, blocking, read by the fork thread
	cgFD0     = 5               // first v1 "tasks" file or v2 job cgroup directory
	maxCgFDs  = 4               // v1: the slot's memory and pids "tasks", then the init's own
	cleanWait = 2 * time.Second // longest the init tries to kill leftovers
)

// Main runs the sandbox init and exits when this process was started as
// one by a [Strict] runner; otherwise it returns false at once. Call it
// first thing in main (cmd/kiln does, in sandboxChild) and in TestMain of
// packages whose tests run a Strict runner.
func Main() bool {
	if os.Getenv(initEnv) == "" || len(os.Args) == 0 || os.Args[0] != initArg0 || os.Getpid() != 1 {
		return false
	}
	os.Exit(runInit(os.Getenv(initEnv)))
	return true
}

// runInit is the whole life of an init; it returns the exit code.
func runInit(mode string) int {
	slowRuntimeThreads()
	inheritNothing()
	f := os.NewFile(sockFD, "sandbox-socket")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox init:", err)
		return 1
	}
	conn := fc.(*net.UnixConn)
	defer conn.Close()
	unix.CloseOnExec(jobsFD) // every descriptor of the init but stdio is close-on-exec
	rbuf := newRecvBuf()
	m, _, err := recvMsg(conn, rbuf)
	if err != nil || m.T != msgSetup || m.Setup == nil {
		fmt.Fprintln(os.Stderr, "sandbox init: no setup message:", err)
		return 1
	}
	notes, err := buildRoot(m.Setup)
	if err == nil && !m.Setup.NoFilter {
		// From here on the init and everything it starts run filtered.
		if err = loadSandboxFilter(); err != nil {
			err = fmt.Errorf("syscall filter: %w", err)
		}
	}
	if err != nil {
		sendMsg(conn, envelope{T: msgReady, Err: err.Error()})
		return 1
	}
	// mode: "v1:N:M", "v2:1" or "none:0" (see initCommand).
	fields := strings.Split(mode, ":")
	var counts [2]int
	for i := range counts {
		if len(fields) > i+1 {
			counts[i], _ = strconv.Atoi(fields[i+1])
		}
	}
	n := min(max(counts[0], 0), maxCgFDs)
	home := min(max(counts[1], 0), maxCgFDs-n)
	adj, _ := os.ReadFile("/proc/self/oom_score_adj")
	r := &jobRunner{oomReset: strings.TrimSpace(string(adj)) != "0", conn: conn, jobUID: m.Setup.JobUID, cgroupV2: fields[0] == "v2", cgFDs: n, homeFDs: home, jobFilter: m.Setup.JobFilter, rbuf: rbuf}
	ready := make(chan threadReady)
	go r.loop(ready)
	tr := <-ready
	if tr.err != nil {
		sendMsg(conn, envelope{T: msgReady, Err: tr.err.Error()})
		return 1
	}
	rm := &readyMsg{Notes: append(notes, tr.notes...), Join: tr.join, JoinNote: tr.joinNote}
	if err := sendMsg(conn, envelope{T: msgReady, Ready: rm}); err != nil {
		return 1
	}
	r.serve()
	return 0
}

// threadReady is what the fork thread reports once prepared.
type threadReady struct {
	notes          []string
	join, joinNote string // readyMsg's
	err            error  // the thread is unfit to fork jobs: the init ends
}

// buildRoot makes a tmpfs root holding the read-only binds, a fresh /proc,
// a minimal /dev and the mount points /w and /tmp, and pivots into it.
// It returns notes on best-effort steps that failed.
func buildRoot(s *setupMsg) ([]string, error) {
	var notes []string
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("make / private: %w", err)
	}
	// No nested user namespaces: without them the job cannot gain
	// capabilities anywhere, which shuts a large kernel attack surface.
	if err := os.WriteFile("/proc/sys/user/max_user_namespaces", []byte("0"), 0); err != nil {
		notes = append(notes, "nested user namespaces not disabled: "+err.Error())
	}
	const root = "/tmp"
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,nr_inodes=4096,mode=0755"); err != nil {
		return nil, fmt.Errorf("mount root tmpfs: %w", err)
	}
	for _, b := range s.Binds {
		if err := bindRO(b, root+b.Path); err != nil {
			return nil, err
		}
	}
	for p, target := range s.Symlinks {
		if err := mkdirFor(root + p); err != nil {
			return nil, err
		}
		if err := os.Symlink(target, root+p); err != nil {
			return nil, fmt.Errorf("symlink %s: %w", p, err)
		}
	}
	for p, content := range s.Files {
		if err := mkdirFor(root + p); err != nil {
			return nil, err
		}
		if err := os.WriteFile(root+p, []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
	}
	if err := makeDev(root + "/dev"); err != nil {
		return nil, err
	}
	for _, d := range []string{"/proc", "/w", "/tmp"} {
		if err := os.MkdirAll(root+d, 0o755); err != nil {
			return nil, err
		}
	}
	// hidepid=2: a job sees its own processes only, not the init, whose
	// counters (/proc/1/stat: CPU and faults of every process it reaped)
	// would tell what earlier jobs did.
	if err := unix.Mount("proc", root+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hidepid=2"); err != nil {
		return nil, fmt.Errorf("mount /proc: %w", err)
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		notes = append(notes, "hostname: "+err.Error())
	}
	if err := pivot(root); err != nil {
		return nil, err
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(-1, "/", 0, &attr); err != nil {
		return nil, fmt.Errorf("make / read-only: %w", err)
	}
	return notes, nil
}

// bindRO bind-mounts b.Path (and what is mounted below it) read-only,
// nosuid and nodev at target.
func bindRO(b bindSpec, target string) error {
	if b.Dir {
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
	} else {
		if err := mkdirFor(target); err != nil {
			return err
		}
		if err := os.WriteFile(target, nil, 0o644); err != nil {
			return err
		}
	}
	if err := unix.Mount(b.Path, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", b.Path, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(-1, target, unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", b.Path, err)
	}
	return nil
}

func mkdirFor(p string) error { return os.MkdirAll(filepath.Dir(p), 0o755) }

// makeDev builds a minimal /dev: null, zero, full, random, urandom (binds of
// the host's nodes, since a user namespace cannot mknod) and the fd links.
func makeDev(dev string) error {
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	for _, n := range []string{"null", "zero", "full", "random", "urandom"} {
		if err := os.WriteFile(dev+"/"+n, nil, 0o644); err != nil {
			return err
		}
		if err := unix.Mount("/dev/"+n, dev+"/"+n, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind /dev/%s: %w", n, err)
		}
	}
	links := map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
	for n, t := range links {
		if err := os.Symlink(t, dev+"/"+n); err != nil {
			return err
		}
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	return unix.MountSetattr(-1, dev, 0, &attr)
}

// pivot makes root the root of this mount namespace and detaches the old
// root, so that nothing of the host's tree stays reachable.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// job is one run read by the fork thread.
type job struct {
	seq   uint64
	msg   *runMsg
	files []*os.File // stdin, stdout, stderr, /w mount, /tmp mount
}

// jobRunner owns the fork thread and the state of the current job.
type jobRunner struct {
	conn      *net.UnixConn
	jobUID    int
	cgroupV2  bool
	cgFDs     int           // cgroup descriptors passed from cgFD0 on
	jobFilter []byte        // the job's syscall filter, a sock_filter array
	oomReset  bool          // the init's oom_score_adj is not 0: reset the job's
	homeFDs   int           // v1: the init's own "tasks" files passed after them
	cgDir     int           // v2: job cgroup directory, or -1
	cgTasks   []int         // v1: the slot's "tasks" files, joined by each job
	cgHome    []int         // v1: the init's own, in the same order
	selfJoin  bool          // v1: the fork thread joins around the launcher's fork
	broken    bool          // the fork thread may be in a slot group: serve no more
	killSeq   atomic.Uint64 // the latest run a kill was asked for
	current   atomic.Uint64 // the run being started or running
	running   atomic.Int32  // pid of the current job's first process, or 0
	rbuf      recvBuf       // serve's reads, one at a time
	jbuf      recvBuf       // the fork thread's reads
	ipcFresh  bool          // the fork thread's IPC namespace is new, unused by any job
	left      leftSockets   // the sockets a job left in the namespace (ipc_linux.go)
	joinNs    int64         // how long the current job's v1 cgroup writes took
	vdsoOff   int           // a `syscall` instruction's offset in the vDSO, or -1 (inject_linux_amd64.go)
}

// killed reports whether a kill was asked for run seq (or a later one).
func (r *jobRunner) killed(seq uint64) bool { return r.killSeq.Load() >= seq }

// serve reads the control socket until the host goes away, then kills
// every process and returns.
func (r *jobRunner) serve() {
	defer unix.Kill(-1, unix.SIGKILL)
	for {
		m, files, err := recvMsg(r.conn, r.rbuf)
		closeFiles(files)
		if err != nil {
			return
		}
		if m.T != msgKill {
			continue
		}
		for old := r.killSeq.Load(); m.Seq > old && !r.killSeq.CompareAndSwap(old, m.Seq); old = r.killSeq.Load() {
		}
		// A kill of an earlier run (late) or of a run not read yet leaves
		// the current job alone; the fork thread checks killed for the
		// latter once it started it (running is set before that check).
		if r.running.Load() != 0 && r.killed(r.current.Load()) {
			unix.Kill(-1, unix.SIGKILL)
		}
	}
}

// loop is the fork thread: it never unlocks its OS thread, so the thread's
// special state (no_new_privs, no bounding capabilities, the job's IPC
// namespace) dies with it and never leaks to other goroutines, and no other
// thread is ever made from it (Go makes a locked thread's new threads from
// its template thread), so none is born in a job's cgroups either.
func (r *jobRunner) loop(ready chan<- threadReady) {
	runtime.LockOSThread()
	if unix.Gettid() == unix.Getpid() {
		// The thread group leader owns the init's memory for the v1
		// memory controller (mm->owner), and the OOM killer looks at
		// leaders only: it must never pass through a job's groups. It
		// stays locked here, idle, so that the fork thread is another.
		go r.loop(ready)
		select {}
	}
	tr := r.prepareThread()
	if tr.err != nil {
		ready <- tr
		return
	}
	r.freshIPC()
	r.jbuf = newRecvBuf()
	ready <- tr
	for {
		m, files, err := recvMsgFD(jobsFD, r.jbuf)
		if err != nil {
			return // the host went away; serve ends the init
		}
		var d doneMsg
		if m.T == msgRun && m.Run != nil && len(files) == 5 {
			r.current.Store(m.Seq)
			d, err = r.run(job{seq: m.Seq, msg: m.Run, files: files})
		} else {
			closeFiles(files)
			err = fmt.Errorf("unexpected %s message", m.T)
		}
		reply := envelope{T: msgDone, Done: &d}
		if err != nil {
			reply.Err = err.Error()
		}
		if sendMsgFD(jobsFD, reply) != nil || r.broken {
			return
		}
		r.freshIPC() // the next job's, off its latency
	}
}

// freshIPC moves the fork thread into a new IPC namespace, which the next
// job's processes inherit (namespaces belong to threads: the init's other
// threads, made by Go's template thread, never join it). Each job gets
// its own, as with CLONE_NEWIPC at its fork, but made while the sandbox
// waits for the job rather than on the job's start. The namespace of the
// last job is freed with its last process.
func (r *jobRunner) freshIPC() {
	r.ipcFresh = unix.Unshare(unix.CLONE_NEWIPC) == nil
}

// prepareThread gives the fork thread what every job inherits and finds
// how jobs join their v1 cgroups.
func (r *jobRunner) prepareThread() (tr threadReady) {
	// The jobs inherit the fork thread's timer slack: the slave's, not the
	// init's other threads' (monitor_linux.go).
	if err := jobSlack(); err != nil {
		return threadReady{err: fmt.Errorf("timer slack: %w", err)}
	}
	r.vdsoOff = vdsoSyscall()
	if err := noMessageQueues(); err != nil {
		return threadReady{err: fmt.Errorf("RLIMIT_MSGQUEUE: %w", err)}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		tr.notes = append(tr.notes, "no_new_privs: "+err.Error())
	}
	for c := 0; c <= 63; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err == unix.EINVAL {
			break
		}
	}
	r.cgDir = -1
	var fds []int
	for fd := cgFD0; fd < cgFD0+r.cgFDs+r.homeFDs; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			continue
		}
		unix.CloseOnExec(fd)
		fds = append(fds, fd)
	}
	if r.cgroupV2 {
		if len(fds) > 0 {
			r.cgDir = fds[0]
		}
		return tr
	}
	if len(fds) != r.cgFDs+r.homeFDs {
		return threadReady{err: fmt.Errorf("cgroup: %d of %d descriptors passed", len(fds), r.cgFDs+r.homeFDs)}
	}
	r.cgTasks = fds[:r.cgFDs]
	if len(r.cgTasks) == 0 {
		return tr
	}
	tr.join = "pid"
	if r.homeFDs != r.cgFDs {
		tr.joinNote = "the host passed no tasks files of the init's own groups"
		return tr
	}
	r.cgHome = fds[r.cgFDs:]
	if err := r.probeSelfJoin(); err != nil {
		if errors.Is(err, errStuck) {
			return threadReady{err: err}
		}
		tr.joinNote = err.Error()
		return tr
	}
	r.selfJoin, tr.join = true, "thread"
	return tr
}

// inheritNothing marks every descriptor of the init but stdio
// close-on-exec, the ones the host passed and any the slave process
// itself inherited without the flag (from its service manager, a shell or
// a wrapper: a log pipe, /dev/null, a socket): forked and executed by the
// init, a job of any client would hold them all. The init's own
// descriptors are made close-on-exec where it takes them.
func inheritNothing() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	var lim unix.Rlimit
	n := uint64(1 << 16)
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < n {
		n = lim.Cur
	}
	for fd := 3; fd < int(n); fd++ {
		unix.CloseOnExec(fd)
	}
}

// run runs one job to its end. d is named so that the deferred unmounts
// can still mark it unclean.
func (r *jobRunner) run(j job) (d doneMsg, err error) {
	in, out, errf, w, tmp := j.files[0], j.files[1], j.files[2], j.files[3], j.files[4]
	defer closeFiles(j.files)
	begin := time.Now()
	var exitAt time.Time
	if err := attach(w, "/w"); err != nil {
		return d, err
	}
	if err := attach(tmp, "/tmp"); err != nil {
		unix.Unmount("/w", unix.MNT_DETACH)
		return d, err
	}
	defer func() {
		e1 := unix.Unmount("/w", unix.MNT_DETACH)
		e2 := unix.Unmount("/tmp", unix.MNT_DETACH)
		d.Clean = d.Clean && e1 == nil && e2 == nil
		if !exitAt.IsZero() {
			d.ReapNs = int64(time.Since(exitAt))
		}
	}()
	path, err := lookPath(j.msg.Argv[0], j.msg.Env)
	if err != nil {
		d.StartErr = err.Error()
		d.Clean = true
		return d, nil
	}
	sys := &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(r.jobUID), Gid: uint32(r.jobUID), NoSetGroups: true},
		Setsid:     true,
		Ptrace:     true,
		Pdeathsig:  syscall.SIGKILL,
	}
	if r.cgDir >= 0 {
		sys.UseCgroupFD, sys.CgroupFD = true, r.cgDir
	}
	attr := &syscall.ProcAttr{Dir: "/w", Env: j.msg.Env, Files: []uintptr{in.Fd(), out.Fd(), errf.Fd()}, Sys: sys}
	if !r.ipcFresh {
		if r.freshIPC(); !r.ipcFresh {
			return d, errors.New("no new IPC namespace for the job")
		}
	}
	r.ipcFresh = false // this job's from here on
	start := time.Now()
	d.AttachNs = int64(start.Sub(begin))
	r.joinNs = 0
	pid, err := r.forkLauncher(path, j.msg.Argv, attr)
	if errors.Is(err, errJoin) || errors.Is(err, errStuck) {
		killAll(&usage{}) // the launcher, if it was forked
		return d, err
	}
	if err != nil {
		d.StartErr = fmt.Sprintf("exec %s: %v", j.msg.Argv[0], err)
		d.Clean = true
		return d, nil
	}
	in.Close()
	out.Close()
	errf.Close()
	r.running.Store(int32(pid))
	defer r.running.Store(0)
	if r.killed(j.seq) {
		unix.Kill(-1, unix.SIGKILL)
	}
	var acc usage
	pid, status, exited, err := r.startJob(pid, j.msg, &acc)
	if err != nil {
		killAll(&acc)
		if r.killed(j.seq) {
			// Killed on request while starting: the job's verdict, not a fault.
			d.Status, d.Clean = uint32(unix.SIGKILL), true
			d.WallNs = int64(time.Since(start))
			return d, nil
		}
		return d, err
	}
	if !exited {
		r.running.Store(int32(pid))
		d.Filtered = !j.msg.NoFilter
	}
	d.StartNs = int64(time.Since(start))
	d.JoinNs = r.joinNs
	// The fork thread waits in wait4 itself, reaping every process of the
	// job as it ends. It keeps its P meanwhile, so the Go runtime's monitor
	// does not sleep deeply; with the slack of monitor_linux.go it wakes
	// about once a timer tick, not every 20 µs. (Parking on a SIGCHLD
	// channel instead woke the runtime's signal goroutine and handed the
	// fork thread's goroutine between threads at every ptrace stop.)
	for !exited {
		var ws unix.WaitStatus
		var ru unix.Rusage
		wpid, err := unix.Wait4(-1, &ws, unix.WALL, &ru)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return d, fmt.Errorf("wait: %w", err)
		}
		acc.reaped(wpid, &ru)
		if wpid == pid && (ws.Exited() || ws.Signaled()) {
			status, exited = ws, true
		}
	}
	exitAt = time.Now()
	d.WallNs = int64(exitAt.Sub(start))
	d.Status = uint32(status)
	d.Clean = killAll(&acc)
	clearSysV() // in the job's IPC namespace: its memory goes now, not after the next job's start
	if r.left.any() {
		collectUnixGarbage()
		d.Clean = false // not for another job: see leftSockets
	}
	d.CPUNs, d.MaxRSSKiB = acc.cpu, acc.maxRSS
	return d, nil
}

// killAll kills every process left in the PID namespace and reaps them.
// It reports whether none was left within cleanWait. With no child left
// the namespace holds the init alone (every process in it descends from
// the init, orphans included), and there is nothing to kill: kill(-1)
// walks every process of the machine, so it is sent only when needed.
func killAll(acc *usage) bool {
	if gone, ok := reap(acc); gone || !ok {
		return gone
	}
	deadline := time.Now().Add(cleanWait)
	pause := 50 * time.Microsecond
	for {
		unix.Kill(-1, unix.SIGKILL)
		if gone, ok := reap(acc); gone || !ok {
			return gone
		}
		if time.Now().After(deadline) {
			return false
		}
		// On the calling thread: a timer would wait for another thread
		// of the init, whose timer slack is monitorSlack.
		ts := unix.NsecToTimespec(int64(pause))
		unix.Nanosleep(&ts, nil)
		pause = min(2*pause, 5*time.Millisecond)
	}
}

// reap reaps the children that ended; gone reports that none is left, ok
// false that wait4 failed.
func reap(acc *usage) (gone, ok bool) {
	for {
		var ws unix.WaitStatus
		var ru unix.Rusage
		wpid, err := unix.Wait4(-1, &ws, unix.WALL|unix.WNOHANG, &ru)
		switch {
		case err == unix.ECHILD:
			return true, true
		case err == unix.EINTR:
			continue
		case err != nil:
			return false, false
		case wpid <= 0:
			return false, true
		}
		acc.reaped(wpid, &ru)
	}
}

// usage sums the resource usage of reaped processes.
type usage struct {
	cpu      int64
	maxRSS   int64
	launcher int // its CPU counts, its resident set (the init's) does not
}

// reaped counts a reaped process.
func (u *usage) reaped(pid int, ru *unix.Rusage) {
	if pid == u.launcher {
		u.addCPU(ru)
		return
	}
	u.add(ru)
}

func (u *usage) add(ru *unix.Rusage) {
	u.addCPU(ru)
	u.maxRSS = max(u.maxRSS, ru.Maxrss)
}

// addCPU counts the CPU time of ru but not its resident set.
func (u *usage) addCPU(ru *unix.Rusage) {
	u.cpu += ru.Utime.Nano() + ru.Stime.Nano()
}

// attach moves a detached mount received from the host onto path.
func attach(f *os.File, path string) error {
	if err := unix.MoveMount(int(f.Fd()), "", unix.AT_FDCWD, path, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s: %w", path, err)
	}
	return nil
}

// lookPath resolves name like a shell would, against PATH of env, inside
// the sandbox's file system.
func lookPath(name string, env []string) (string, error) {
	if name == "" {
		return "", errors.New("empty argv[0]")
	}
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if !filepath.IsAbs(p) {
			p = filepath.Join("/w", p)
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", name, path)
}
