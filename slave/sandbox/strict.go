package sandbox

import (
	"errors"
	"log/slog"
	"strings"
	"time"
)

// Errors of the strict sandbox that callers branch on.
var (
	// ErrStart means the program could not be started inside the sandbox
	// (for example its executable does not exist there). It is the
	// request's fault, not the sandbox's.
	ErrStart = errors.New("sandbox: program could not be started")
	// ErrClosed is returned by Run after Close.
	ErrClosed = errors.New("sandbox: runner closed")
	// ErrMissing means the kernel lacks something strict mode needs; the
	// error text says what.
	ErrMissing = errors.New("sandbox: kernel lacks what strict mode needs")
)

// Defaults of [StrictConfig].
const (
	DefaultWorkDirBytes = 256 << 20 // size cap of the per-job /w tmpfs
	DefaultTmpBytes     = 64 << 20  // size cap of the per-job /tmp tmpfs
	DefaultHostIDBase   = 1_600_000_000
	DefaultHostIDRange  = 1 << 16 // host ids per runner: 32 768 sandboxes at once
	DefaultLockDir      = "/run/kiln"
	DefaultStackBytes   = 256 << 20
	DefaultOpenFiles    = 1024
	DefaultProcs        = 256
)

// DefaultReadOnly lists the host paths a strict sandbox shows read-only at
// the same place. Missing paths are skipped; a path that is a symbolic link
// on the host (merged /usr: /bin -> usr/bin) is recreated as the same link.
// Glob patterns are expanded when the runner is created. /usr covers the
// compilers, the Python standard library and the JDKs under /usr/lib/jvm.
var DefaultReadOnly = []string{
	"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
	"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d",
	"/etc/alternatives", "/etc/java-*", "/etc/python3*", "/etc/localtime",
}

// StrictConfig configures a [Strict] runner. The zero value is usable.
type StrictConfig struct {
	// ReadOnly lists host paths bind-mounted read-only (nosuid, nodev) at
	// the same path; nil means DefaultReadOnly. Nothing else of the host's
	// file system is visible: no /root, no /home, no slave bundle.
	ReadOnly []string
	// WorkDirBytes caps the job's work directory /w, a fresh tmpfs per run
	// into which the regular files of Spec.Dir are copied and from which new
	// or changed regular files are copied back. Default DefaultWorkDirBytes.
	WorkDirBytes int64
	// TmpBytes caps the job's /tmp, a fresh tmpfs per run. Default
	// DefaultTmpBytes.
	TmpBytes int64
	// HostIDBase is where the search for a free range of host uids/gids
	// starts: the runner locks the first free range of DefaultHostIDRange
	// ids at HostIDBase + k*DefaultHostIDRange (a lock file in LockDir),
	// and its sandbox slot n maps its init to first+2n and its job to
	// first+2n+1. These ids must own nothing on the host. Default
	// DefaultHostIDBase.
	HostIDBase int
	// LockDir holds the uid range lock files. Default DefaultLockDir.
	LockDir string
	// MaxIdle is how many prepared sandboxes are kept for reuse (the
	// warm pool). Zero means 4; negative disables reuse, so that every run
	// creates and destroys its own namespaces.
	MaxIdle int
	// Exe is the binary re-executed as the sandbox init; it must call
	// [Main] first thing in main. Default "/proc/self/exe".
	Exe string
	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
	// Trace, when set, is told how long each step of every run took, in
	// order. It is for measurement (the per-step benchmarks); it is called
	// on the run's goroutine and must return at once. Host steps: "limits"
	// (cgroup limits and baselines), "tmpfs" (the two per-run mounts),
	// "files" (the job's files into /w), "pipes", "send" (the run message),
	// "await" (until the init reports the job done), "drain" (the output
	// copiers' end), "usage" (cgroup peak and OOM count), "copy-out". The
	// init's, within "await": "init-attach" (the mounts onto /w and /tmp),
	// "init-start" (fork, exec, and the stopped job made ready: cgroups,
	// filter, rlimits), "init-cgroup" (within "init-start", the v1 cgroup
	// writes: the fork thread's join and return, or the move of the job's
	// first process by pid; 0 under v2), "init-run" (released to the first
	// process's exit),
	// "init-reap" (every process killed and reaped, mounts detached).
	Trace func(step string, d time.Duration)
}

// Capabilities says what a strict sandbox enforces on this machine.
type Capabilities struct {
	Namespaces  []string // namespaces created for each sandbox
	Cgroup      string   // "v1", "v2" or "" when no usable cgroup
	Controllers []string // cgroup controllers in force: memory, pids
	Features    []string // other layers: tmpfs work dir, no_new_privs, ...
	Filter      string   // the syscall filter every job runs under; "" when none
	Missing     []string // what is missing or degraded, one phrase each
}

// String renders c for the slave's start-up line, for example
// "namespaces: user,pid,mount,net,ipc,uts,cgroup; cgroup v1: memory,pids;
// tmpfs work dir, no_new_privs, ...".
func (c Capabilities) String() string {
	parts := []string{"namespaces: " + strings.Join(c.Namespaces, ",")}
	if c.Cgroup != "" {
		parts = append(parts, "cgroup "+c.Cgroup+": "+strings.Join(c.Controllers, ","))
	} else {
		parts = append(parts, "cgroup: none")
	}
	if c.Filter != "" {
		parts = append(parts, c.Filter)
	} else {
		parts = append(parts, "NO syscall filter")
	}
	if len(c.Features) > 0 {
		parts = append(parts, strings.Join(c.Features, ", "))
	}
	if len(c.Missing) > 0 {
		parts = append(parts, "missing: "+strings.Join(c.Missing, "; "))
	}
	return strings.Join(parts, "; ")
}

func (c *StrictConfig) setDefaults() {
	if c.ReadOnly == nil {
		c.ReadOnly = DefaultReadOnly
	}
	if c.WorkDirBytes <= 0 {
		c.WorkDirBytes = DefaultWorkDirBytes
	}
	if c.TmpBytes <= 0 {
		c.TmpBytes = DefaultTmpBytes
	}
	if c.HostIDBase <= 0 {
		c.HostIDBase = DefaultHostIDBase
	}
	if c.LockDir == "" {
		c.LockDir = DefaultLockDir
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = 4
	}
	if c.Exe == "" {
		c.Exe = "/proc/self/exe"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
