package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Host uid ranges. Every strict runner (one per slave process) maps its
// sandboxes to host ids of its own: range k is the DefaultHostIDRange ids
// from HostIDBase + k*DefaultHostIDRange, and a runner takes the first range
// whose lock file, LockDir/uids-<first id>.lock, it can flock. The lock is
// held until Close and released by the kernel when the process dies, so
// two slaves on one host (or a slave and a test binary) never share uids,
// hence never share key quotas, RLIMIT_NPROC counts or signal rights. A
// stale lock file of a dead slave is free again at once.

// ErrNoIDRange means every host uid range is locked by another runner.
var ErrNoIDRange = errors.New("sandbox: no free host uid range")

// maxIDRanges bounds the search for a free range (ids up to about 6.7e7
// past HostIDBase).
const maxIDRanges = 1 << 10

// idRange is a locked range of host ids.
type idRange struct {
	first int      // first host id of the range
	lock  *os.File // holds the flock; nil when released
}

// lockIDRange locks the first free range at or after base.
func lockIDRange(dir string, base int) (idRange, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return idRange{}, fmt.Errorf("sandbox: uid range lock dir: %w", err)
	}
	for k := 0; k < maxIDRanges; k++ {
		first := base + k*DefaultHostIDRange
		if first+DefaultHostIDRange-1 > 1<<32-2 {
			break
		}
		name := filepath.Join(dir, "uids-"+strconv.Itoa(first)+".lock")
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o644)
		if err != nil {
			return idRange{}, fmt.Errorf("sandbox: uid range lock: %w", err)
		}
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return idRange{first: first, lock: f}, nil
		}
		f.Close()
		if err != unix.EWOULDBLOCK {
			return idRange{}, fmt.Errorf("sandbox: uid range lock %s: %w", name, err)
		}
	}
	return idRange{}, ErrNoIDRange
}

// maxSlots is how many sandboxes one range holds at once.
func (r idRange) maxSlots() int { return DefaultHostIDRange / 2 }

// release unlocks the range.
func (r *idRange) release() {
	if r.lock != nil {
		r.lock.Close()
		r.lock = nil
	}
}
