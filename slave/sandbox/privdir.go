package sandbox

import (
	"os"
	"sync"
)

// PrivateDir is a directory that only this process can reach and that
// the kernel discards when the process exits, SIGKILL included: a tmpfs
// created detached (fsopen/fsmount) and never attached anywhere, reached
// through its mount descriptor as /proc/self/fd/N. Nothing in it is ever
// written to a disk (there is no swap on a slave, or its pages are swapped
// like any process memory). The slave keeps its job directories there, so
// that no job's source or program is left at rest when it dies.
// Close releases it; it is safe for concurrent use.
type PrivateDir struct {
	mnt   *os.File
	path  string
	close sync.Once
}

// Path returns the directory's path, valid in this process only.
func (d *PrivateDir) Path() string { return d.path }

// Close unmounts the directory and frees everything in it (once the last
// file opened in it is closed). It is idempotent.
func (d *PrivateDir) Close() error {
	if d == nil {
		return nil
	}
	var err error
	d.close.Do(func() { err = d.mnt.Close() })
	return err
}
