package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// Files and directories inside a data directory.
const (
	lockFile    = "LOCK"    // flock'ed by the master using the directory; holds its pid
	clusterFile = "CLUSTER" // the cluster the directory belongs to (the CA fingerprint)
	raftDBFile  = "raft.db" // raft-boltdb: the raft log and stable store
	snapDir     = "snapshots"
)

// clusterHeader opens the CLUSTER file.
const clusterHeader = "kiln data directory v1"

// Errors Open returns for a data directory it refuses. Each is wrapped
// with the directory and the details.
var (
	// ErrLocked: another process holds the directory.
	ErrLocked = errors.New("data directory in use by another master")
	// ErrOtherCluster: the directory belongs to another cluster (CA).
	ErrOtherCluster = errors.New("data directory of another cluster")
	// ErrCorrupt: the store, a snapshot or the CLUSTER file is damaged or
	// inconsistent.
	ErrCorrupt = errors.New("data directory corrupt")
	// ErrDiskFull: less than Config.MinFree bytes available.
	ErrDiskFull = errors.New("not enough free disk space")
)

// dataDir is an open, locked data directory.
type dataDir struct {
	path string
	lock *os.File
}

// openDir creates the directory if needed, takes its lock, checks free
// space and the cluster it belongs to.
func openDir(path, cluster string, minFree uint64) (*dataDir, error) {
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", path, err)
	}
	d := &dataDir{path: path}
	if err := d.takeLock(); err != nil {
		return nil, err
	}
	err := checkFree(path, minFree)
	if err == nil {
		err = d.checkCluster(cluster)
	}
	if err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *dataDir) file(name string) string { return filepath.Join(d.path, name) }

// takeLock flocks LOCK without waiting and writes our pid into it.
func (d *dataDir) takeLock() error {
	f, err := os.OpenFile(d.file(lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", d.path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(d.file(lockFile))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s is held by process %s; stop that master first, or give this one another --data-dir",
				ErrLocked, d.path, strings.TrimSpace(string(pid)))
		}
		return fmt.Errorf("data directory %s: lock: %w", d.path, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	d.lock = f
	return nil
}

func (d *dataDir) close() {
	if d.lock != nil {
		d.lock.Close() // releases the flock
		d.lock = nil
	}
}

// checkFree refuses a file system with less than minFree bytes available.
func checkFree(path string, minFree uint64) error {
	avail, err := FreeSpace(path)
	if err != nil {
		return fmt.Errorf("data directory %s: %w", path, err)
	}
	if avail < minFree {
		return fmt.Errorf("%w: %s has %d bytes available, the master needs at least %d (free some space or lower --min-free)",
			ErrDiskFull, path, avail, minFree)
	}
	return nil
}

// FreeSpace returns the bytes available to an unprivileged user on the
// file system holding path.
func FreeSpace(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs: %w", err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// checkCluster compares the CLUSTER file with cluster, or writes it in a
// directory that holds no state yet.
func (d *dataDir) checkCluster(cluster string) error {
	b, err := os.ReadFile(d.file(clusterFile))
	if errors.Is(err, os.ErrNotExist) {
		if d.hasState() {
			return fmt.Errorf("%w: %s holds raft state but no %s file; it was not written by a Kiln master, or the file was deleted",
				ErrCorrupt, d.path, clusterFile)
		}
		return writeFileSync(d.file(clusterFile), []byte(fmt.Sprintf("%s\nca %s\n", clusterHeader, cluster)))
	}
	if err != nil {
		return fmt.Errorf("data directory %s: %w", d.path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 || lines[0] != clusterHeader || !strings.HasPrefix(lines[1], "ca ") {
		return fmt.Errorf("%w: %s: unreadable %s file", ErrCorrupt, d.path, clusterFile)
	}
	if got := strings.TrimPrefix(lines[1], "ca "); got != cluster {
		return fmt.Errorf("%w: %s belongs to the cluster of CA %s, this master's CA is %s; give it the data directory of its own cluster",
			ErrOtherCluster, d.path, got, cluster)
	}
	return nil
}

func (d *dataDir) hasState() bool {
	_, err1 := os.Stat(d.file(raftDBFile))
	ents, _ := os.ReadDir(d.file(snapDir))
	return err1 == nil || len(ents) > 0
}

func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}

// checkBolt reads every page of the raft database reachable from its
// root, if the file exists: bbolt's own Check runs in a goroutine of its
// own, where a damaged page's panic could not be recovered. A damaged
// file can make bbolt panic, or fault on a page beyond the end of a
// truncated file; both are turned into ErrCorrupt here.
func checkBolt(path string) (err error) {
	if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
		return nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, p)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	defer db.Close()
	var sum byte
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				for i := 0; i < len(v); i += 4096 { // touch every page of the value
					sum ^= v[i]
				}
				return nil
			})
		})
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return nil
}
