package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Strict runs each process in its own sandbox: fresh user, PID, mount,
// network, IPC, UTS and cgroup namespaces; an unprivileged uid with no
// capabilities and no_new_privs; a read-only view of the system
// directories; a private size-capped tmpfs work directory and /tmp; rlimits
// and, where available, cgroup memory and pids limits; a wall-clock timer
// that kills every process of the job.
//
// Prepared sandboxes are pooled: after a run that ended normally the
// sandbox's processes are all reaped, its /w and /tmp unmounted and
// destroyed, and the next run gets fresh ones, so no process, file or mount
// of one job is visible to the next. A sandbox whose run timed out, was
// killed or could not be cleaned is destroyed instead.
//
// Strict is safe for concurrent use; Close releases every sandbox.
type Strict struct {
	cfg   StrictConfig
	cg    *cgroups
	setup setupMsg
	ids   idRange // host uids of this runner, locked until Close

	noFilter  bool                      // benchmarks only: run jobs without the syscall filter
	oomExempt atomic.Bool               // the last init started is OOM-exempt
	join      atomic.Pointer[[2]string] // the last init's readyMsg Join and JoinNote
	joinWarn  sync.Once                 // logs the first init that joins by pid

	mu     sync.Mutex
	idle   []*container
	slots  map[int]bool // slot numbers in use
	closed bool
	live   sync.WaitGroup // one per container not yet destroyed
	bg     sync.WaitGroup // background releases in progress
}

// background runs f on its own goroutine; Close waits for it.
func (s *Strict) background(f func()) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f()
	}()
}

// NewStrict checks cfg, locks a range of host uids (see [ErrNoIDRange])
// and returns a runner; Close releases the range. It starts no process:
// sandboxes are made by the first runs (or by Check).
func NewStrict(cfg StrictConfig) (*Strict, error) {
	cfg.setDefaults()
	s := &Strict{cfg: cfg, slots: map[int]bool{}}
	setup, err := rootSetup(cfg.ReadOnly)
	if err != nil {
		return nil, err
	}
	if setup.JobFilter, err = jobFilterProgram(); err != nil {
		return nil, err
	}
	s.setup = setup
	if s.ids, err = lockIDRange(cfg.LockDir, cfg.HostIDBase); err != nil {
		return nil, err
	}
	s.cfg.HostIDBase = s.ids.first
	s.cg = detectCgroups()
	s.cg.sweep()
	return s, nil
}

// Name returns "strict".
func (s *Strict) Name() string { return "strict" }

// rootSetup turns the read-only list into binds and symlinks.
func rootSetup(paths []string) (setupMsg, error) {
	m := setupMsg{
		Symlinks: map[string]string{},
		Files: map[string]string{
			"/etc/passwd": "root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:1000:1000:sandbox:/w:/usr/sbin/nologin\n",
			"/etc/group":  "root:x:0:\nsandbox:x:1000:\n",
		},
		Hostname: "sandbox",
		JobUID:   1000,
	}
	var all []string
	for _, p := range paths {
		if !filepath.IsAbs(p) || strings.Contains(p, "..") {
			return m, fmt.Errorf("sandbox: read-only path %q must be absolute and clean", p)
		}
		matches, _ := filepath.Glob(p)
		all = append(all, matches...)
	}
	sort.Strings(all)
	for _, p := range all {
		st, err := os.Lstat(p)
		if err != nil {
			continue
		}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return m, err
			}
			m.Symlinks[p] = t
		case st.IsDir():
			m.Binds = append(m.Binds, bindSpec{Path: p, Dir: true})
		case st.Mode().IsRegular():
			m.Binds = append(m.Binds, bindSpec{Path: p})
		}
	}
	return m, nil
}

// Run runs spec in a sandbox and reports what happened. See [Runner].
func (s *Strict) Run(ctx context.Context, spec Spec) (Outcome, error) {
	out, _, err := s.run(ctx, spec)
	return out, err
}

// run is Run, also reporting whether the job ran under the syscall filter.
func (s *Strict) run(ctx context.Context, spec Spec) (Outcome, bool, error) {
	if len(spec.Argv) == 0 {
		return Outcome{}, false, errors.New("sandbox: empty argv")
	}
	if spec.Dir == "" && spec.Keep != nil {
		return Outcome{}, false, errors.New("sandbox: Keep without a Dir to copy back to")
	}
	if err := checkFiles(spec.Files); err != nil {
		return Outcome{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return Outcome{}, false, err
	}
	c, err := s.get()
	if err != nil {
		return Outcome{}, false, err
	}
	out, filtered, reuse, err := c.run(ctx, &spec, runOpts{cfg: &s.cfg, bg: s.background, noFilter: s.noFilter})
	s.put(c, reuse && err == nil)
	return out, filtered, err
}

// get takes an idle sandbox or makes one.
func (s *Strict) get() (*container, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	for n := len(s.idle); n > 0; n = len(s.idle) {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		if c.alive() {
			s.mu.Unlock()
			return c, nil
		}
		s.mu.Unlock()
		c.destroy()
		s.release(c.slot)
		s.mu.Lock()
	}
	slot := 0
	for s.slots[slot] {
		slot++
	}
	if slot >= s.ids.maxSlots() {
		s.mu.Unlock()
		return nil, fmt.Errorf("sandbox: more than %d sandboxes at once", s.ids.maxSlots())
	}
	s.slots[slot] = true
	s.live.Add(1)
	s.mu.Unlock()
	c, err := startContainer(slot, &s.cfg, s.cg, &s.setup)
	if err != nil {
		s.release(slot)
		return nil, err
	}
	s.oomExempt.Store(c.oomExempt)
	s.join.Store(&[2]string{c.join, c.joinNote})
	if c.join == "pid" {
		s.joinWarn.Do(func() {
			s.cfg.Logger.Warn("sandbox: cgroup v1: each job's first process is moved into its groups by pid, and a start may wait for an RCU grace period (~10 ms)", "reason", c.joinNote)
		})
	}
	return c, nil
}

// put returns c to the pool or destroys it.
func (s *Strict) put(c *container, reuse bool) {
	s.mu.Lock()
	if reuse && !s.closed && len(s.idle) < s.cfg.MaxIdle {
		s.idle = append(s.idle, c)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	c.destroy()
	s.release(c.slot)
}

func (s *Strict) release(slot int) {
	s.mu.Lock()
	delete(s.slots, slot)
	s.mu.Unlock()
	s.live.Done()
}

// Warm prepares up to n idle sandboxes ahead of the first runs.
func (s *Strict) Warm(n int) error {
	var cs []*container
	defer func() {
		for _, c := range cs {
			s.put(c, true)
		}
	}()
	for i := 0; i < n && i < s.cfg.MaxIdle; i++ {
		c, err := s.get()
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	return nil
}

// Close destroys every sandbox, waiting for runs in progress to end, and
// removes the runner's cgroups. It is idempotent.
func (s *Strict) Close() error {
	s.mu.Lock()
	s.closed = true
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		c.destroy()
		s.release(c.slot)
	}
	s.live.Wait()
	s.bg.Wait()
	s.cg.removeParents()
	s.mu.Lock()
	s.ids.release()
	s.mu.Unlock()
	return nil
}

// HostIDs returns the first host uid of the runner's range and its size:
// slot n's init runs as first+2n and its job as first+2n+1.
func (s *Strict) HostIDs() (first, n int) { return s.ids.first, DefaultHostIDRange }
