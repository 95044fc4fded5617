package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// The job's work directory is a fresh, size-capped tmpfs per run, created
// detached by the host (new mount API) and attached at /w by the init. The
// host copies Spec.Dir's regular files in through the mount's descriptor
// and, once every job process is dead, copies back the new or changed
// regular files that Spec.Keep selects. The program therefore never sees
// Spec.Dir itself: it cannot plant a symbolic link or FIFO there, or race
// the host. What it can make the host write is bounded by what it could
// write into /w: allocated bytes (holes stay holes, each inode is copied
// once) up to the tmpfs's size, and at most maxTreeFiles entries and
// maxTreeDepth levels; past a bound the copy stops and says so in
// Outcome.NotKept, so the program keeps the verdict it earned.

const (
	maxTreeFiles = 10000 // most entries copied either way
	maxTreeDepth = 16
)

// errOverBudget stops a copy whose allocated bytes passed the budget.
var errOverBudget = errors.New("over the work directory's size")

// newTmpfs makes a detached tmpfs of at most size bytes whose root belongs
// to uid:gid with the given mode, and returns its mount descriptor.
func newTmpfs(size int64, uid, gid int, mode uint32) (*os.File, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	opts := [][2]string{
		{"size", strconv.FormatInt(size, 10)},
		{"nr_inodes", strconv.Itoa(2 * maxTreeFiles)},
		{"mode", strconv.FormatUint(uint64(mode), 8)},
		{"uid", strconv.Itoa(uid)},
		{"gid", strconv.Itoa(gid)},
	}
	for _, o := range opts {
		if err := unix.FsconfigSetString(fsfd, o[0], o[1]); err != nil {
			return nil, fmt.Errorf("tmpfs %s=%s: %w", o[0], o[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("create tmpfs: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return nil, fmt.Errorf("fsmount tmpfs: %w", err)
	}
	return os.NewFile(uintptr(mfd), "tmpfs"), nil
}

// stamp identifies a file's content as copied in.
type stamp struct {
	size  int64
	mtime unix.Timespec
	ino   uint64
}

// treeCopy walks a directory tree below src and copies it below dst.
// Copying in (filled) fills seen and fails on any error; copying out skips
// unchanged files, asks keep, counts allocated bytes against budget, and
// reports what the job's tree made it leave in notKept rather than failing.
type treeCopy struct {
	uid, gid int              // owner of created entries (-1: leave)
	seen     map[string]stamp // copy-in: filled; copy-out: unchanged files skipped
	filled   bool
	keep     func(string) bool // copy-out: what to copy back
	budget   int64             // allocated bytes still allowed
	files    int
	inodes   map[uint64]string // copy-out: inode → the name it was copied under
	notKept  []string
	stopped  bool // a bound was reached: nothing more is copied
}

// copyIn copies the regular files and directories of dir into the tmpfs
// w, owned by uid:gid, and records what it copied.
func copyIn(dir string, w *os.File, uid, gid int) (map[string]stamp, error) {
	src, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(src)
	dst, err := unix.Openat(int(w.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dst)
	t := &treeCopy{uid: uid, gid: gid, seen: map[string]stamp{}, filled: true, budget: 1<<63 - 1}
	if err := t.copyDir(src, dst, "", 0); err != nil {
		return nil, fmt.Errorf("copy %s into the sandbox: %w", dir, err)
	}
	return t.seen, nil
}

// writeFiles creates files in the tmpfs w, owned by uid:gid, and records
// them in seen when it is not nil. /w is fresh and the job has not started,
// so nothing can be in the way; a name taken (by a file of Spec.Dir) is an
// error.
func writeFiles(w *os.File, files []File, uid, gid int, seen map[string]stamp) error {
	for _, f := range files {
		if err := createFile(int(w.Fd()), f, uid, gid, seen); err != nil {
			return fmt.Errorf("write %s into the sandbox: %w", f.Name, err)
		}
	}
	return nil
}

func createFile(dir int, f File, uid, gid int, seen map[string]stamp) error {
	perm := uint32(f.Mode.Perm())&0o755 | 0o600 // as copyIn makes them
	defer HoldForks()()                         // runs after the deferred close below
	fd, err := unix.Openat(dir, f.Name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, perm); err != nil { // whatever the umask
		return err
	}
	for data := f.Data; len(data) > 0; {
		n, err := unix.Write(fd, data)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	if seen == nil {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	seen[f.Name] = stamp{size: st.Size, mtime: st.Mtim, ino: st.Ino}
	return nil
}

// copyOut copies the regular files of w that keep selects and that are
// new or changed since copyIn back into dir, at most budget allocated
// bytes. It returns what keep selected but was not copied, each as
// "name: reason"; an error means the host side failed.
func copyOut(w *os.File, dir string, seen map[string]stamp, keep func(string) bool, budget int64) ([]string, error) {
	src, err := unix.Openat(int(w.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(src)
	dst, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dst)
	t := &treeCopy{uid: -1, gid: -1, seen: seen, keep: keep, budget: budget, inodes: map[uint64]string{}}
	if err := t.copyDir(src, dst, "", 0); err != nil {
		return t.notKept, fmt.Errorf("copy results out of the sandbox: %w", err)
	}
	return t.notKept, nil
}

// leave records that rel was not copied; in copy-in it is an error.
func (t *treeCopy) leave(rel string, why error) error {
	if t.filled {
		return fmt.Errorf("%s: %w", rel, why)
	}
	t.notKept = append(t.notKept, rel+": "+why.Error())
	return nil
}

// bound records that a bound stopped the copy at rel.
func (t *treeCopy) bound(rel string, why error) error {
	t.stopped = true
	return t.leave(rel, why)
}

func (t *treeCopy) copyDir(src, dst int, rel string, depth int) error {
	names, err := readDirNames(src)
	if err != nil {
		return t.leave(rel, err)
	}
	slices.Sort(names)
	for _, name := range names {
		if t.stopped {
			return nil
		}
		if err := t.copyEntry(src, dst, name, rel+name, depth); err != nil {
			return err
		}
	}
	return nil
}

func (t *treeCopy) copyEntry(src, dst int, name, rel string, depth int) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return t.leave(rel, err)
	}
	if t.keep != nil && !t.keep(keepName(rel, st.Mode)) {
		return nil
	}
	if t.files++; t.files > maxTreeFiles {
		return t.bound(rel, fmt.Errorf("more than %d entries", maxTreeFiles))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return t.copySubdir(src, dst, name, rel, depth)
	case unix.S_IFREG:
		return t.copyRegular(src, dst, name, rel, &st)
	}
	if t.filled {
		return nil // the slave's own directory: links and the like are skipped
	}
	return t.leave(rel, errors.New("not a regular file"))
}

// keepName is the name Spec.Keep is asked about: a directory's ends in "/".
func keepName(rel string, mode uint32) string {
	if mode&unix.S_IFMT == unix.S_IFDIR {
		return rel + "/"
	}
	return rel
}

// copyRegular copies one regular file unless it is unchanged, another
// name of a file already copied, or over the budget.
func (t *treeCopy) copyRegular(src, dst int, name, rel string, st *unix.Stat_t) error {
	s := stamp{size: st.Size, mtime: st.Mtim, ino: st.Ino}
	if !t.filled {
		if old, ok := t.seen[rel]; ok && old == s {
			return nil
		}
		if first, ok := t.inodes[st.Ino]; ok {
			return t.leave(rel, fmt.Errorf("another name of %s (hard link), copied once", first))
		}
		t.inodes[st.Ino] = rel
	}
	if st.Blocks*512 > t.budget {
		return t.bound(rel, errOverBudget)
	}
	return t.copyFile(src, dst, name, rel, st.Mode&0o777)
}

func (t *treeCopy) copySubdir(src, dst int, name, rel string, depth int) error {
	if depth >= maxTreeDepth {
		return t.leave(rel+"/", fmt.Errorf("deeper than %d levels", maxTreeDepth))
	}
	mode := uint32(0o755)
	if !t.filled {
		mode = 0o700 // the host's copy: for the slave only
	}
	err := unix.Mkdirat(dst, name, mode)
	if err != nil && err != unix.EEXIST {
		return err
	}
	if err == nil && t.uid >= 0 {
		if err := unix.Fchownat(dst, name, t.uid, t.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	}
	flags := unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	s, err := unix.Openat(src, name, flags, 0)
	if err != nil {
		return t.leave(rel, err)
	}
	defer unix.Close(s)
	d, err := unix.Openat(dst, name, flags, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return t.leave(rel, errors.New("not a directory on the host"))
		}
		return err
	}
	defer unix.Close(d)
	return t.copyDir(s, d, rel+"/", depth+1)
}

func (t *treeCopy) copyFile(src, dst int, name, rel string, mode uint32) error {
	in, err := openRegularAt(src, name)
	if err != nil {
		return t.leave(rel, err)
	}
	inf := os.NewFile(uintptr(in), name)
	defer inf.Close()
	perm := mode&0o755 | 0o600 // in /w: as on the host, readable by the job
	if !t.filled {
		perm = mode&0o700 | 0o600 // on the host: for the slave only
	}
	var size int64
	err = writeAt(dst, name, os.FileMode(perm), func(f *os.File) error {
		if t.uid >= 0 {
			if err := f.Chown(t.uid, t.gid); err != nil {
				return err
			}
		}
		fi, err := inf.Stat()
		if err != nil {
			return err
		}
		size = fi.Size()
		return copySparse(f, inf, size, &t.budget)
	})
	if err == errOverBudget {
		return t.bound(rel, err)
	}
	if err != nil || !t.filled {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dst, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	t.seen[rel] = stamp{size: st.Size, mtime: st.Mtim, ino: st.Ino}
	return nil
}

// copySparse copies the first size bytes of in to out inside the kernel
// (sendfile), data extents only (SEEK_DATA/SEEK_HOLE), so that holes stay
// holes, and takes the bytes copied from *budget.
func copySparse(out, in *os.File, size int64, budget *int64) error {
	ifd, ofd := int(in.Fd()), int(out.Fd())
	for off := int64(0); off < size; {
		data, hole, err := nextData(ifd, off, size)
		if err != nil || data >= size {
			return truncateTo(out, size, err)
		}
		if hole-data > *budget {
			return errOverBudget
		}
		*budget -= hole - data
		if _, err := unix.Seek(ofd, data, io.SeekStart); err != nil {
			return err
		}
		if err := sendRange(ofd, ifd, data, hole); err != nil {
			return err
		}
		off = hole
	}
	return truncateTo(out, size, nil)
}

// nextData returns the next data extent [data, hole) at or after off, or
// data = size when only a hole is left.
func nextData(fd int, off, size int64) (data, hole int64, err error) {
	data, err = unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO:
		return size, size, nil
	case err == unix.EINVAL || err == unix.EOPNOTSUPP:
		return off, size, nil // no hole support: all data
	case err != nil:
		return 0, 0, err
	}
	if hole, err = unix.Seek(fd, data, unix.SEEK_HOLE); err != nil {
		return 0, 0, err
	}
	return data, min(hole, size), nil
}

// sendRange copies bytes [from, to) of in to out's current offset.
func sendRange(out, in int, from, to int64) error {
	for off := from; off < to; {
		n, err := unix.Sendfile(out, in, &off, int(min(to-off, 1<<30)))
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
		case err != nil:
			return err
		case n == 0:
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

func truncateTo(f *os.File, size int64, err error) error {
	if err != nil {
		return err
	}
	return f.Truncate(size)
}

// readDirNames lists a directory given by descriptor.
func readDirNames(fd int) ([]string, error) {
	d, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}
