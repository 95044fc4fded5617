package sandbox

import (
	"io"
	"sync"
	"time"
)

// Plain is the development runner (Name "none"): no namespaces, no separate
// uid, so the program can read whatever the slave can. It gives each process
// its own process group, an empty environment except Spec.Env, Spec.Dir as
// working directory, rlimits, a wall-clock timer that kills the whole group,
// and capped output. When the main process ends, whatever it left behind in
// its group is killed too.
//
// # Rlimits without a fork hook
//
// Go cannot run code between fork and exec, so Plain starts the program
// through a tiny /bin/sh gate: `read x <&3 && exec "$@"`. While the shell
// waits on fd 3, Plain sets the limits on it with prlimit(2), then releases
// it; exec keeps them. The program therefore never runs unlimited, at the
// cost of one shell start (about a millisecond).
//
// # Limits applied
//
// RLIMIT_CPU (rounded up to seconds, hard limit one second later),
// RLIMIT_AS from MemoryBytes (unless NoAddressSpaceLimit), RLIMIT_FSIZE,
// RLIMIT_NOFILE, RLIMIT_NPROC (best effort: it counts every process of the
// uid and root ignores it) and RLIMIT_CORE=0.
//
// # Known gaps
//
// A process that calls setsid(2) leaves the group and survives; Plain stops
// waiting for its output after KillGrace. CPU comes from wait4(2), so it
// covers the main process and the children it waited for; peak memory is
// the main process's, sampled from /proc (see sampleHWM), so a peak in its
// last milliseconds can be missed.
// Memory exhaustion under RLIMIT_AS shows up as an allocation failure in the
// program, which Plain cannot tell apart from other failures: MemoryExceeded
// is never set; callers apply their own, language-aware heuristics.
//
// Plain is safe for concurrent use; its zero value is ready.
type Plain struct {
	// Shell is the POSIX shell used as the gate; default "/bin/sh".
	Shell string
	// KillGrace bounds how long Run waits, after the main process ended and
	// its group was killed, for the output pipes to close and the group to
	// empty; default 2s.
	KillGrace time.Duration
}

// Name returns "none".
func (p *Plain) Name() string { return "none" }

func (p *Plain) shell() string {
	if p.Shell != "" {
		return p.Shell
	}
	return "/bin/sh"
}

func (p *Plain) grace() time.Duration {
	if p.KillGrace > 0 {
		return p.KillGrace
	}
	return 2 * time.Second
}

// outputCap forwards stdout and stderr to their writers, never concurrently,
// and counts their bytes against one shared limit. Past the limit it drops
// the rest and calls onExceed once.
type outputCap struct {
	mu       sync.Mutex
	limit    int64 // 0: unlimited
	total    int64
	counts   [2]int64
	exceeded bool
	onExceed func()
}

// write forwards p for stream i (0 stdout, 1 stderr) to w, trimmed to what
// the limit still allows.
func (c *outputCap) write(i int, w io.Writer, p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exceeded {
		return
	}
	if c.limit > 0 && c.total+int64(len(p)) > c.limit {
		p = p[:c.limit-c.total]
		c.exceeded = true
		defer c.onExceed()
	}
	c.total += int64(len(p))
	c.counts[i] += int64(len(p))
	if w != nil && len(p) > 0 {
		_, _ = w.Write(p) // a failing sink must not stop the drain
	}
}

// pump copies r into the cap for stream i until EOF or a read error.
func (c *outputCap) pump(i int, r io.Reader, w io.Writer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.write(i, w, buf[:n])
		}
		if err != nil {
			return
		}
	}
}
