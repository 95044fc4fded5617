package state

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/hashicorp/raft"
)

// reserveFile is the disk reserve inside a data directory: a file of
// Config.Reserve bytes with real blocks, deleted when the disk fills so
// that the results of the jobs already running can still be written.
const reserveFile = "reserve"

// DefaultReserve is the size of the reserve file.
const DefaultReserve = 8 << 20

// reserve owns the reserve file of an open data directory.
type reserve struct {
	path string
	size int64

	mu       sync.Mutex
	released bool
}

// create writes the reserve file with size bytes of zeros (real blocks,
// not a sparse file) and syncs it; an existing file of that size is kept.
func (r *reserve) create() error {
	if fi, err := os.Stat(r.path); err == nil && fi.Size() == r.size {
		return nil
	}
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for left := r.size; left > 0 && err == nil; {
		n := min(left, int64(len(buf)))
		_, err = f.Write(buf[:n])
		left -= n
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(r.path)
	}
	return err
}

// release deletes the reserve file (once), giving its space to the log.
func (r *reserve) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.released {
		r.released = true
		os.Remove(r.path)
	}
}

// check is Store.CheckSpace with a reserve: below minFree the reserve is
// released and new work refused; while it is released, new work is
// refused until the disk has minFree plus the reserve available again and
// the reserve is written back.
func (r *reserve) check(dir string, minFree uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.released {
		if err := checkFree(dir, minFree); err != nil {
			r.released = true
			os.Remove(r.path)
			return err
		}
		return nil
	}
	if err := checkFree(dir, minFree+uint64(r.size)); err != nil {
		return fmt.Errorf("%w (the disk reserve %s was used and is written back first)", err, r.path)
	}
	if err := r.create(); err != nil {
		return fmt.Errorf("%w: %s: cannot write back the disk reserve: %v", ErrDiskFull, r.path, err)
	}
	r.released = false
	return nil
}

// reserveLogs wraps the raft log and stable store: a write that fails
// with ENOSPC releases the reserve and is tried once more, so that raft
// neither loses the entry nor steps down.
type reserveLogs struct {
	raft.LogStore
	raft.StableStore
	r *reserve
}

func (l *reserveLogs) retry(op func() error) error {
	err := op()
	if err != nil && errors.Is(err, syscall.ENOSPC) {
		l.r.release()
		err = op()
	}
	return err
}

func (l *reserveLogs) StoreLog(log *raft.Log) error {
	return l.retry(func() error { return l.LogStore.StoreLog(log) })
}

func (l *reserveLogs) StoreLogs(logs []*raft.Log) error {
	return l.retry(func() error { return l.LogStore.StoreLogs(logs) })
}

func (l *reserveLogs) Set(k, v []byte) error {
	return l.retry(func() error { return l.StableStore.Set(k, v) })
}

func (l *reserveLogs) SetUint64(k []byte, v uint64) error {
	return l.retry(func() error { return l.StableStore.SetUint64(k, v) })
}
