package slave

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// DefaultMinFree is the free space a slave wants on the file systems of
// its work and cache directories before it takes jobs.
const DefaultMinFree = 64 << 20

// probeSize is what the health check writes to each directory.
const probeSize = 4 << 10

// Health checks that the executor's directories (work root, compile cache)
// can take a job: each is writable (a small file is written, synced and
// removed) and its file system has at least minFree bytes free. It returns
// "" when they can, else why not; a slave reports it in every Load, and
// the master places no job on a slave that is not healthy.
func (e *Executor) Health(minFree uint64) string {
	for _, dir := range e.dirs() {
		if msg := checkDir(dir, minFree); msg != "" {
			return msg
		}
	}
	return ""
}

// dirs lists the directories jobs write to.
func (e *Executor) dirs() []string {
	dirs := []string{e.cfg.WorkRoot}
	if e.cfg.Cache != nil {
		dirs = append(dirs, e.cfg.Cache.dir)
	}
	return dirs
}

// checkDir checks one directory; see Health.
func checkDir(dir string, minFree uint64) string {
	f, err := os.CreateTemp(dir, ".health-*")
	if err != nil {
		return fmt.Sprintf("%s is not writable: %v", dir, err)
	}
	name := f.Name()
	defer os.Remove(name)
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Sprintf("cannot write to %s: %v", filepath.Dir(name), err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Sprintf("cannot read the free space of %s: %v", dir, err)
	}
	if free := st.Bavail * uint64(st.Bsize); free < minFree {
		return fmt.Sprintf("%s has %d MiB free, under the %d MiB a slave needs", dir, free>>20, minFree>>20)
	}
	return ""
}
