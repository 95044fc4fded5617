// Package sandbox runs one untrusted process under limits and reports what
// happened. It is the leaf of the slave: it imports nothing of Kiln.
//
// [Plain] runs the process in its own process group with rlimits and a
// wall-clock timer (development only). [Strict] (Linux) adds fresh user, PID,
// mount, network, IPC and UTS namespaces, an unprivileged uid, read-only
// system directories, a private work directory and cgroup limits.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
)

// ErrUnsupported is returned by a sandbox that cannot run on this system.
var ErrUnsupported = errors.New("sandbox: unsupported on this system")

// Limits bound one process. Zero means "no limit of this kind" except where
// the runner documents a default.
type Limits struct {
	Wall        time.Duration // wall-clock timeout; kills the whole process tree
	CPU         time.Duration // CPU time (RLIMIT_CPU, rounded up to seconds, and measured)
	MemoryBytes int64         // memory (cgroup where available, else RLIMIT_AS/RLIMIT_DATA)
	OutputBytes int64         // stdout+stderr bytes kept; past it the process is killed
	FileBytes   int64         // largest file the process may write (RLIMIT_FSIZE)
	Procs       int           // processes/threads (cgroup pids, else RLIMIT_NPROC)
	OpenFiles   int           // RLIMIT_NOFILE

	// NoAddressSpaceLimit tells runners not to turn MemoryBytes into
	// RLIMIT_AS, for runtimes (the JVM) that reserve far more address space
	// than they use; the caller bounds their heap itself. Cgroup memory
	// limits still apply.
	NoAddressSpaceLimit bool
}

// Spec is one process to run.
type Spec struct {
	Argv   []string  // Argv[0] is resolved against PATH of Env by the runner
	Env    []string  // full environment; nothing is inherited
	Dir    string    // host path of the job's work directory
	Stdin  io.Reader // may be nil
	Stdout io.Writer // receives output as it is produced; may be nil
	Stderr io.Writer // may be nil
	Limits Limits
	// Keep selects what a runner with a private work directory (Strict)
	// copies back into Dir once every process of the job is dead. It is
	// asked for each entry by its name relative to the work directory
	// ("main", "pkg/A.class"; a directory's name ends in "/" and the
	// directory is entered only when kept). Nil copies nothing back. What
	// is copied back is bounded: regular files only, each inode once, holes
	// kept, at most the work directory's size in allocated bytes, 10 000
	// entries and 16 levels; what Keep selected but was not copied is listed
	// in Outcome.NotKept, never an error. Plain runs in Dir itself.
	Keep func(name string) bool
	// Files are put into the work directory before the run, next to the
	// regular files of Dir (a name in both is an error), each a new file
	// owned by the job with its Mode's permission bits (the owner may
	// always read and write it). Their Data is only read, so it may be
	// shared with other runs at the same time. A strict runner writes them
	// straight into the job's private work directory, so Dir may then be
	// empty (and Keep must be nil: there is nowhere to copy back to); Plain
	// writes them into Dir.
	Files []File
}

// File is one file of a [Spec] given in memory.
type File struct {
	Name string      // base name: no "/", not "." or ".."
	Mode fs.FileMode // permission bits
	Data []byte
}

// ErrBadFile is returned by Run for a Spec.Files name that is not a base
// name. It is the request's fault.
var ErrBadFile = errors.New("sandbox: file name is not a base name")

// checkFiles refuses names of files that are not base names.
func checkFiles(files []File) error {
	for _, f := range files {
		if f.Name == "" || f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, "/\x00") {
			return fmt.Errorf("%w: %q", ErrBadFile, f.Name)
		}
	}
	return nil
}

// Outcome is what happened to a process.
type Outcome struct {
	ExitCode       int           // exit status when it exited, -1 when killed
	Signal         int           // terminating signal, 0 when it exited
	Wall           time.Duration // wall time
	CPU            time.Duration // user+system CPU time of the whole tree
	PeakMemoryKiB  int64         // peak resident memory
	TimedOut       bool          // wall or CPU limit hit
	MemoryExceeded bool          // memory limit hit (cgroup event, OOM kill, or allocation failure detected)
	OutputExceeded bool          // OutputBytes hit
	StdoutBytes    int64
	StderrBytes    int64
	// NotKept lists what Spec.Keep selected but was not copied back, each
	// as "name: reason" (not a regular file, another name of a file already
	// copied, over the work directory's size, past the entry or depth
	// bound).
	NotKept []string
}

// Runner runs processes. Implementations are safe for concurrent use.
type Runner interface {
	// Run starts spec, waits for it and every process it started to end,
	// and reports the outcome. An error means the sandbox itself failed
	// (an internal error), not the program.
	Run(ctx context.Context, spec Spec) (Outcome, error)
	// Name is "none" or "strict".
	Name() string
}
