package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	readyTimeout = 10 * time.Second // longest an init may take to build its root
	killGrace    = 3 * time.Second  // after a kill request, before killing the init
)

// container is one prepared sandbox: an init process in its namespaces and
// the host's end of its socket. It runs one job at a time.
type container struct {
	slot    int
	jobUID  int // host uid of the job
	cmd     *exec.Cmd
	conn    *net.UnixConn // the control socket: setup, ready, kill
	jobs    *net.UnixConn // the jobs socket: run, done
	seq     uint64        // the last run's number (see proto_linux.go)
	cg      *slotCgroup   // nil without cgroups
	exited  chan struct{}
	destroy func()

	oomExempt bool           // the init's oom_score_adj is -1000
	join      string         // how its jobs join their v1 cgroups (readyMsg.Join)
	joinNote  string         // why by pid
	released  sync.WaitGroup // the last job's tmpfs mounts being released

	// Buffers reused by each job in turn: the socket's reads (one at a
	// time, see await) and the output copiers' (done when runJob returns).
	rbuf recvBuf
	obuf [2][]byte
	// spare holds the next job's /w and /tmp, made in the background once
	// a job ended (see runJob); nil when none is ready. Guarded by
	// released: written by a release task, read after waiting for them.
	spare [2]*os.File
}

// runOpts are the runner-wide settings of one run.
type runOpts struct {
	cfg      *StrictConfig
	bg       func(func()) // runs a release off the job's latency
	noFilter bool         // benchmarks only
}

// startContainer starts the init of slot n and waits until it is ready.
func startContainer(n int, cfg *StrictConfig, cgs *cgroups, setup *setupMsg) (*container, error) {
	initUID := cfg.HostIDBase + 2*n
	c := &container{slot: n, jobUID: initUID + 1, exited: make(chan struct{}), rbuf: newRecvBuf(),
		obuf: [2][]byte{make([]byte, drainBuf), make([]byte, drainBuf)}}
	var err error
	if cgs.version != "" {
		if c.cg, err = cgs.newSlot(n, initUID); err != nil {
			return nil, fmt.Errorf("sandbox: cgroup for slot %d: %w", n, err)
		}
	}
	fail := func(err error) (*container, error) {
		c.kill()
		return nil, fmt.Errorf("sandbox: start: %w", err)
	}
	var initEnd, jobsEnd *os.File
	if c.conn, initEnd, err = socketPair("sandbox-control"); err != nil {
		return fail(err)
	}
	if c.jobs, jobsEnd, err = socketPair("sandbox-jobs"); err != nil {
		initEnd.Close()
		return fail(err)
	}
	c.cmd = initCommand(cfg, cgs, c.cg, initUID, initEnd, jobsEnd)
	err = c.cmd.Start()
	initEnd.Close()
	jobsEnd.Close()
	if c.cg != nil {
		c.cg.closePassed()
	}
	if err != nil {
		c.cmd = nil
		return fail(err)
	}
	go func() { c.cmd.Wait(); close(c.exited) }()
	// The init is never in its job's memory cgroup while the job runs (on
	// v1 its fork thread, never its leader, passes through around the
	// launcher's fork), so that group's OOM killer cannot pick it. Where
	// the host may (CAP_SYS_RESOURCE), it is also exempt from the
	// machine's; the job resets its own score to 0.
	c.oomExempt = setOOMScore(c.cmd.Process.Pid, -1000)
	var once sync.Once
	c.destroy = func() { once.Do(c.kill) }
	if err := sendMsg(c.conn, envelope{T: msgSetup, Setup: setup}); err != nil {
		return fail(err)
	}
	c.conn.SetReadDeadline(time.Now().Add(readyTimeout))
	m, files, err := recvMsg(c.conn, c.rbuf)
	closeFiles(files)
	c.conn.SetReadDeadline(time.Time{})
	if err != nil {
		return fail(fmt.Errorf("sandbox init: %w", err))
	}
	if m.T != msgReady || m.Err != "" {
		return fail(fmt.Errorf("sandbox init: %s", m.Err))
	}
	if m.Ready != nil {
		for _, note := range m.Ready.Notes {
			cfg.Logger.Warn("sandbox: degraded", "slot", n, "note", note)
		}
		c.join, c.joinNote = m.Ready.Join, m.Ready.JoinNote
	}
	return c, nil
}

// socketPair makes a SOCK_SEQPACKET pair: the host's end, and the init's
// (blocking, for the init to inherit).
func socketPair(name string) (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	hostEnd, initEnd := os.NewFile(uintptr(fds[0]), name+"-host"), os.NewFile(uintptr(fds[1]), name+"-init")
	fc, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		initEnd.Close()
		return nil, nil, err
	}
	return fc.(*net.UnixConn), initEnd, nil
}

// initCommand builds the command that starts an init in new namespaces.
func initCommand(cfg *StrictConfig, cgs *cgroups, cg *slotCgroup, initUID int, sock, jobs *os.File) *exec.Cmd {
	// The mode tells the init which cgroup descriptors follow the sockets:
	// "v1:N:M" (N "tasks" files of the slot's groups, then M, 0 or N, of
	// the init's own groups, in the same order), "v2:1" (the job group's
	// directory) or "none:0" when the machine offers no cgroups to this
	// slave.
	mode := "none:0"
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS |
		syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	sys := &syscall.SysProcAttr{
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: initUID, Size: 1}, {ContainerID: 1000, HostID: initUID + 1, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: initUID, Size: 1}, {ContainerID: 1000, HostID: initUID + 1, Size: 1}},
		// The init clears its supplementary groups (the host's) with setgroups.
		GidMappingsEnableSetgroups: true,
		Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
		Setsid:                     true,
		Pdeathsig:                  syscall.SIGKILL,
	}
	extra := []*os.File{sock, jobs}
	if cg != nil {
		extra = append(extra, cg.pass...)
		extra = append(extra, cg.home...)
		mode = "v1:" + strconv.Itoa(len(cg.pass)) + ":" + strconv.Itoa(len(cg.home))
		if cg.v2 {
			mode = "v2:" + strconv.Itoa(len(cg.pass))
			sys.UseCgroupFD, sys.CgroupFD = true, int(cg.initDir.Fd())
		}
	}
	if cgs.version != "v2" {
		// A cgroup namespace hides the host's group paths from the job; on
		// v2 it would hide the job group from the init too.
		flags |= syscall.CLONE_NEWCGROUP
	}
	sys.Cloneflags = flags
	cmd := &exec.Cmd{
		Path:        cfg.Exe,
		Args:        []string{initArg0},
		Env:         []string{initEnv + "=" + mode},
		ExtraFiles:  extra,
		Stderr:      os.Stderr,
		SysProcAttr: sys,
	}
	return cmd
}

// kill ends the init (and with it every process of its PID namespace),
// waits for it and removes the slot's cgroups.
func (c *container) kill() {
	if c.conn != nil {
		c.conn.Close()
	}
	if c.jobs != nil {
		c.jobs.Close()
	}
	if c.cmd != nil {
		c.cmd.Process.Kill()
		<-c.exited
	}
	if c.cg != nil {
		c.cg.remove()
	}
	c.released.Wait()
	closeFiles(c.spare[:])
	c.spare = [2]*os.File{}
}

// mounts returns the job's /w and /tmp: fresh tmpfs mounts, never seen by
// any job, made ahead in the background when the last job ended.
func (c *container) mounts(cfg *StrictConfig) (w, tmp *os.File, err error) {
	if c.spare[0] != nil {
		w, tmp, c.spare = c.spare[0], c.spare[1], [2]*os.File{}
		return w, tmp, nil
	}
	return newMounts(cfg, c.jobUID)
}

// release lets go of a job's mounts in the background, off the job's
// latency (freeing a tmpfs's pages and superblock), and when next is set
// makes the next job's there too. The next job waits for it (see runJob).
func (c *container) release(o runOpts, mounts [2]*os.File, next *bool) {
	c.released.Add(1)
	more := *next // deferred: the run's final answer
	o.bg(func() {
		defer c.released.Done()
		closeFiles(mounts[:])
		if !more {
			return
		}
		if w, tmp, err := newMounts(o.cfg, c.jobUID); err == nil {
			c.spare = [2]*os.File{w, tmp}
		}
	})
}

// newMounts makes a job's /w, owned by its uid, and /tmp.
func newMounts(cfg *StrictConfig, uid int) (w, tmp *os.File, err error) {
	w, err = newTmpfs(cfg.WorkDirBytes, uid, uid, 0o755)
	if err != nil {
		return nil, nil, fmt.Errorf("sandbox: work dir: %w", err)
	}
	tmp, err = newTmpfs(cfg.TmpBytes, 0, 0, 0o1777)
	if err != nil {
		w.Close()
		return nil, nil, fmt.Errorf("sandbox: /tmp: %w", err)
	}
	return w, tmp, nil
}

// alive reports whether the init still runs.
func (c *container) alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// run runs one job in c. reuse says whether c is clean for the next job;
// filtered whether the job ran under the syscall filter. Releasing a tmpfs
// (freeing its pages and superblock) is left to o.bg, off the job's
// latency, but the next job waits for it: the pages are charged to the
// slot's memory cgroup and would count against its limit.
func (c *container) run(ctx context.Context, spec *Spec, o runOpts) (out Outcome, filtered, reuse bool, err error) {
	out, d, reuse, err := c.runJob(ctx, spec, o)
	return out, d.Filtered, reuse, err
}

func (c *container) runJob(ctx context.Context, spec *Spec, o runOpts) (out Outcome, d doneMsg, reuse bool, err error) {
	cfg, lim := o.cfg, spec.Limits
	c.released.Wait()
	clk := StepClock{Trace: cfg.Trace}
	clk.Start()
	if c.cg != nil {
		if err := c.cg.limit(lim.MemoryBytes, procsOr(lim.Procs)); err != nil {
			return out, d, false, fmt.Errorf("sandbox: %w", err)
		}
	}
	clk.Mark("limits")
	w, tmp, err := c.mounts(cfg)
	if err != nil {
		return out, d, false, err
	}
	defer c.release(o, [2]*os.File{w, tmp}, &reuse)
	clk.Mark("tmpfs")
	var seen map[string]stamp
	if spec.Dir != "" {
		if seen, err = copyIn(spec.Dir, w, c.jobUID, c.jobUID); err != nil {
			return out, d, false, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := writeFiles(w, spec.Files, c.jobUID, c.jobUID, seen); err != nil {
		return out, d, false, fmt.Errorf("sandbox: %w", err)
	}
	clk.Mark("files")
	jio := newJobIO(spec, c.obuf)
	if err := jio.open(); err != nil {
		return out, d, false, fmt.Errorf("sandbox: pipes: %w", err)
	}
	defer jio.closeAll()
	clk.Mark("pipes")
	msg := &runMsg{Argv: spec.Argv, Env: spec.Env, Rlimits: rlimits(lim, c.cg != nil && c.cg.memDir != ""), NoFilter: o.noFilter}
	c.seq++
	seq := c.seq
	err = sendMsg(c.jobs, envelope{T: msgRun, Seq: seq, Run: msg}, jio.childFDs(int(w.Fd()), int(tmp.Fd()))...)
	jio.closeChildEnds()
	if err != nil {
		return out, d, false, fmt.Errorf("sandbox: send run: %w", err)
	}
	jio.start(func() { c.requestKill(seq) })
	clk.Mark("send")
	var timedOut bool
	d, timedOut, err = c.await(ctx, seq, lim.Wall)
	clk.Mark("await")
	var startOOM bool
	var startPeak int64
	if err != nil && c.cg != nil && ctx.Err() == nil {
		// The job is born in its memory group (on v1 the launcher is
		// forked there): its launcher's exec and the fork of its copy are
		// charged to the client's limit, and the group's OOM killer may end
		// them before the init lets the job go, which the init reports as
		// a failed start. That is the job's verdict, not the sandbox's
		// fault (TestJobKilledByItsLimitWhileStarting); the sandbox is torn
		// down below and not reused.
		startPeak, startOOM = c.cg.usage()
	}
	if err != nil || !d.Clean {
		// Processes may remain and hold the output pipes: end them all.
		c.destroy()
	}
	jio.wait()
	clk.Mark("drain")
	if startOOM {
		return Outcome{ExitCode: -1, Signal: int(syscall.SIGKILL), MemoryExceeded: true, PeakMemoryKiB: startPeak}, d, false, nil
	}
	if err != nil {
		return out, d, false, err
	}
	if d.StartErr != "" {
		return out, d, d.Clean, fmt.Errorf("%w: %s", ErrStart, d.StartErr)
	}
	out = outcome(d, lim, timedOut, jio)
	if c.cg != nil {
		peak, oom := c.cg.usage()
		out.PeakMemoryKiB = max(peak, d.MaxRSSKiB)
		out.MemoryExceeded = oom
	} else if lim.MemoryBytes > 0 && d.MaxRSSKiB*1024 >= lim.MemoryBytes*9/10 && (out.Signal != 0 || out.ExitCode != 0) {
		out.MemoryExceeded = true // RLIMIT_AS heuristic: failed near the limit
	}
	clk.Mark("usage")
	if spec.Dir != "" && spec.Keep != nil {
		if out.NotKept, err = copyOut(w, spec.Dir, seen, spec.Keep, cfg.WorkDirBytes); err != nil {
			return out, d, false, fmt.Errorf("sandbox: %w", err)
		}
	}
	clk.Mark("copy-out")
	clk.init(&d)
	reuse = d.Clean && !timedOut && !out.OutputExceeded && c.alive()
	return out, d, reuse, nil
}

// init reports the init's own steps, from its done message.
func (s *StepClock) init(d *doneMsg) {
	if s.Trace == nil {
		return
	}
	s.Trace("init-attach", time.Duration(d.AttachNs))
	s.Trace("init-start", time.Duration(d.StartNs))
	s.Trace("init-cgroup", time.Duration(d.JoinNs))
	s.Trace("init-run", time.Duration(d.WallNs-d.StartNs))
	s.Trace("init-reap", time.Duration(d.ReapNs))
}

// await waits for the job's done message, enforcing the wall limit and
// ctx: past either it asks the init to kill every job process, and kills
// the init (and with it the sandbox) if the job is not done killGrace
// later. timedOut is true when the wall limit killed the job. The message
// is read on the caller's goroutine; the limits act from timer callbacks.
func (c *container) await(ctx context.Context, seq uint64, wall time.Duration) (d doneMsg, timedOut bool, err error) {
	k := &killer{c: c, seq: seq}
	if wall > 0 {
		t := time.AfterFunc(wall, func() { k.kill(true) })
		defer t.Stop()
	}
	defer context.AfterFunc(ctx, func() { k.kill(false) })()
	m, files, rerr := recvMsg(c.jobs, c.rbuf)
	closeFiles(files)
	timedOut, cancelled := k.stop()
	switch {
	case rerr != nil:
		return doneMsg{}, timedOut, fmt.Errorf("sandbox: init lost: %w", rerr)
	case m.Err != "" || m.Done == nil:
		return doneMsg{}, timedOut, fmt.Errorf("sandbox init: %s", m.Err)
	case cancelled:
		return *m.Done, timedOut, ctx.Err()
	}
	return *m.Done, timedOut, nil
}

// killer kills one job on its limits, once, and arms the grace timer.
type killer struct {
	c         *container
	seq       uint64 // the run
	mu        sync.Mutex
	done      bool // the job's answer came: nothing more to kill
	asked     bool // the init was asked to kill
	timedOut  bool
	cancelled bool
	grace     *time.Timer
}

// kill asks the init to kill the job (the wall limit when timeout).
func (k *killer) kill(timeout bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return
	}
	if timeout {
		k.timedOut = true
	} else {
		k.cancelled = true
	}
	if k.asked {
		return
	}
	k.asked = true
	k.c.requestKill(k.seq)
	// The init did not answer: kill it and the whole namespace, which
	// ends the read in await.
	k.grace = time.AfterFunc(killGrace, k.c.destroy)
}

// stop ends the killer once the answer came.
func (k *killer) stop() (timedOut, cancelled bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.done = true
	if k.grace != nil {
		k.grace.Stop()
	}
	return k.timedOut, k.cancelled
}

// setOOMScore writes adj to pid's oom_score_adj and reports whether it
// took effect (lowering it needs CAP_SYS_RESOURCE).
func setOOMScore(pid, adj int) bool {
	p := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	os.WriteFile(p, []byte(strconv.Itoa(adj)), 0)
	b, err := os.ReadFile(p)
	return err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(adj)
}

// requestKill asks the init to kill every process of run seq.
func (c *container) requestKill(seq uint64) {
	sendMsg(c.conn, envelope{T: msgKill, Seq: seq})
}

// outcome turns the init's report into an Outcome.
func outcome(d doneMsg, lim Limits, timedOut bool, jio *jobIO) Outcome {
	ws := syscall.WaitStatus(d.Status)
	out := Outcome{
		ExitCode:       -1,
		Wall:           time.Duration(d.WallNs),
		CPU:            time.Duration(d.CPUNs),
		PeakMemoryKiB:  d.MaxRSSKiB,
		TimedOut:       timedOut,
		OutputExceeded: jio.exceeded(),
		StdoutBytes:    jio.stdout.n,
		StderrBytes:    jio.stderr.n,
	}
	switch {
	case ws.Exited():
		out.ExitCode = ws.ExitStatus()
	case ws.Signaled():
		out.Signal = int(ws.Signal())
	}
	if lim.CPU > 0 && (out.CPU >= lim.CPU || out.Signal == int(syscall.SIGXCPU)) {
		out.TimedOut = true
	}
	return out
}

func procsOr(n int) int {
	if n > 0 {
		return n
	}
	return DefaultProcs
}

// rlimits lists the job's resource limits. RLIMIT_AS is used only when no
// cgroup limits memory: it would starve the JVM, which reserves far more
// address space than it uses.
func rlimits(l Limits, cgroupMemory bool) []rlimitSpec {
	set := func(res int, v uint64) rlimitSpec { return rlimitSpec{Resource: res, Cur: v, Max: v} }
	files := uint64(DefaultOpenFiles)
	if l.OpenFiles > 0 {
		files = uint64(l.OpenFiles)
	}
	rs := []rlimitSpec{
		set(unix.RLIMIT_CORE, 0),
		set(unix.RLIMIT_NOFILE, files),
		set(unix.RLIMIT_NPROC, uint64(procsOr(l.Procs))),
		set(unix.RLIMIT_STACK, DefaultStackBytes),
	}
	if l.CPU > 0 {
		secs := uint64((l.CPU + time.Second - 1) / time.Second)
		rs = append(rs, rlimitSpec{Resource: unix.RLIMIT_CPU, Cur: secs, Max: secs + 1})
	}
	if l.FileBytes > 0 {
		rs = append(rs, set(unix.RLIMIT_FSIZE, uint64(l.FileBytes)))
	}
	if l.MemoryBytes > 0 && !cgroupMemory && !l.NoAddressSpaceLimit {
		rs = append(rs, set(unix.RLIMIT_AS, uint64(l.MemoryBytes)))
	}
	return rs
}

// jobIO owns the pipes between the host and the job.
type jobIO struct {
	spec           *Spec
	limit          int64
	stdout, stderr counter
	mu             sync.Mutex
	total          int64
	over           bool
	kill           func()
	inW, outR      *os.File // the host's ends, in Go's poller
	errR           *os.File
	child          [3]int    // the init's ends (stdin, stdout, stderr), or -1
	bufs           [2][]byte // the copiers' buffers: stdout, stderr
	wg             sync.WaitGroup
}

// drainBuf is the size of each output copier's buffer.
const drainBuf = 32 << 10

// newJobIO returns the plumbing of spec's run; the copiers use bufs, which
// are free again once wait returned.
func newJobIO(spec *Spec, bufs [2][]byte) *jobIO {
	return &jobIO{spec: spec, limit: spec.Limits.OutputBytes, bufs: bufs, child: [3]int{-1, -1, -1}}
}

// open makes the three pipes. The init's ends stay plain blocking
// descriptors: made as files (os.Pipe) they were set non-blocking,
// registered with the poller, set blocking again by Fd and unregistered
// at their close, eight system calls per job for nothing.
func (j *jobIO) open() error {
	for i, host := range []**os.File{&j.inW, &j.outR, &j.errR} {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		h, c := p[0], p[1] // stdout, stderr: the host reads
		if i == 0 {
			h, c = p[1], p[0] // stdin: the host writes
		}
		j.child[i] = c
		if err := unix.SetNonblock(h, true); err != nil {
			unix.Close(h)
			return err
		}
		*host = os.NewFile(uintptr(h), "job-pipe")
	}
	return nil
}

// childFDs lists what the init receives: stdin, stdout, stderr, /w, /tmp.
func (j *jobIO) childFDs(w, tmp int) []int {
	return []int{j.child[0], j.child[1], j.child[2], w, tmp}
}

func (j *jobIO) closeChildEnds() {
	for i, fd := range j.child {
		if fd >= 0 {
			unix.Close(fd)
			j.child[i] = -1
		}
	}
}

func (j *jobIO) closeAll() {
	j.closeChildEnds()
	for _, f := range []*os.File{j.inW, j.outR, j.errR} {
		if f != nil {
			f.Close()
		}
	}
}

// start copies stdin in and stdout/stderr out, counting output against the
// limit and calling kill once when it is exceeded.
func (j *jobIO) start(kill func()) {
	j.kill = kill
	j.wg.Add(2)
	if empty(j.spec.Stdin) {
		j.inW.Close() // at EOF for the job at once, no copier
	} else {
		j.wg.Add(1)
		go func() {
			defer j.wg.Done()
			io.Copy(j.inW, j.spec.Stdin)
			j.inW.Close()
		}()
	}
	go j.drain(j.outR, j.spec.Stdout, &j.stdout, j.bufs[0])
	go j.drain(j.errR, j.spec.Stderr, &j.stderr, j.bufs[1])
}

// empty reports whether r is nil or a reader that says it holds nothing
// (bytes.Reader, strings.Reader).
func empty(r io.Reader) bool {
	if r == nil {
		return true
	}
	l, ok := r.(interface{ Len() int })
	return ok && l.Len() == 0
}

type counter struct{ n int64 }

func (j *jobIO) drain(r *os.File, w io.Writer, c *counter, buf []byte) {
	defer j.wg.Done()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			keep := j.account(int64(n), c)
			if w != nil && keep > 0 {
				w.Write(buf[:keep])
			}
		}
		if err != nil {
			return
		}
	}
}

// account counts n new bytes and returns how many of them to keep.
func (j *jobIO) account(n int64, c *counter) int64 {
	j.mu.Lock()
	keep := n
	if j.limit > 0 && j.total+n > j.limit {
		keep = max(j.limit-j.total, 0)
	}
	j.total += keep
	c.n += keep
	trip := j.limit > 0 && keep < n && !j.over
	if trip {
		j.over = true
	}
	j.mu.Unlock()
	if trip {
		j.kill()
	}
	return keep
}

func (j *jobIO) exceeded() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.over
}

// wait waits for the copiers: the job's processes are all dead, so the
// output pipes are at EOF; stdin's pipe is closed under its copier.
func (j *jobIO) wait() {
	j.inW.Close()
	j.wg.Wait()
}

var _ Runner = (*Strict)(nil)
