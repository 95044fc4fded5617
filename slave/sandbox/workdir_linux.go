package sandbox

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The job's work directory is a fresh, size-capped tmpfs per run, created
// detached by the host (new mount API) and attached at /w by the init. The
// host copies Spec.Dir's regular files in through the mount's descriptor
// and, once every job process is dead, copies new or changed regular files
// back. The program therefore never sees Spec.Dir itself: it cannot plant a
// symbolic link or FIFO there, fill the host's disk, or race the host.

const (
	maxTreeFiles = 10000 // most entries copied either way
	maxTreeDepth = 16
)

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
type treeCopy struct {
	uid, gid int              // owner of created entries (-1: leave)
	seen     map[string]stamp // copy-in: filled; copy-out: unchanged files skipped
	filled   bool
	files    int
	skipped  []string // non-regular entries not copied
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
	t := &treeCopy{uid: uid, gid: gid, seen: map[string]stamp{}, filled: true}
	if err := t.copyDir(src, dst, "", 0); err != nil {
		return nil, fmt.Errorf("copy %s into the sandbox: %w", dir, err)
	}
	return t.seen, nil
}

// copyOut copies regular files of w that are new or changed since copyIn
// back into dir; symbolic links, FIFOs, devices and sockets are skipped
// and returned.
func copyOut(w *os.File, dir string, seen map[string]stamp) ([]string, error) {
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
	t := &treeCopy{uid: -1, gid: -1, seen: seen}
	if err := t.copyDir(src, dst, "", 0); err != nil {
		return t.skipped, fmt.Errorf("copy results out of the sandbox: %w", err)
	}
	return t.skipped, nil
}

func (t *treeCopy) copyDir(src, dst int, rel string, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("%s: deeper than %d levels", rel, maxTreeDepth)
	}
	names, err := readDirNames(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		if t.files++; t.files > maxTreeFiles {
			return fmt.Errorf("more than %d files", maxTreeFiles)
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
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return t.copySubdir(src, dst, name, rel, depth)
	case unix.S_IFREG:
		s := stamp{size: st.Size, mtime: st.Mtim, ino: st.Ino}
		if !t.filled {
			if old, ok := t.seen[rel]; ok && old == s {
				return nil
			}
		}
		return t.copyFile(src, dst, name, rel, st.Mode&0o777)
	}
	t.skipped = append(t.skipped, rel)
	return nil
}

func (t *treeCopy) copySubdir(src, dst int, name, rel string, depth int) error {
	err := unix.Mkdirat(dst, name, 0o755)
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
		return err
	}
	defer unix.Close(s)
	d, err := unix.Openat(dst, name, flags, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			t.skipped = append(t.skipped, rel)
			return nil
		}
		return err
	}
	defer unix.Close(d)
	return t.copyDir(s, d, rel+"/", depth+1)
}

func (t *treeCopy) copyFile(src, dst int, name, rel string, mode uint32) error {
	in, err := openRegularAt(src, name)
	if err != nil {
		if err == ErrUnsafeFile {
			t.skipped = append(t.skipped, rel)
			return nil
		}
		return err
	}
	inf := os.NewFile(uintptr(in), name)
	defer inf.Close()
	err = writeAt(dst, name, os.FileMode(mode&0o755|0o600), func(f *os.File) error {
		if t.uid >= 0 {
			if err := f.Chown(t.uid, t.gid); err != nil {
				return err
			}
		}
		return copyData(f, inf)
	})
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

// copyData copies in to out inside the kernel (sendfile) when it can.
func copyData(out, in *os.File) error {
	for {
		n, err := unix.Sendfile(int(out.Fd()), int(in.Fd()), nil, 1<<30)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err == unix.EINVAL || err == unix.ENOSYS {
			_, err = io.Copy(out, in)
			return err
		}
		if err != nil || n == 0 {
			return err
		}
	}
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
