//go:build unix

package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// HoldForks keeps this process from forking until the returned function
// is called. Hold it from the open to the close of a file written for
// writing that a program may execute: a child forked meanwhile holds a
// copy of the descriptor until its own exec (close-on-exec acts only
// then), and while any process holds a file open for writing, exec of it
// fails with ETXTBSY ("text file busy"). The slave forks often (a pool's
// next init waits in its new user namespace for its ID maps before its
// exec), so without this a job's ./main failed to start now and then.
// Every fork of a Go program goes through syscall.ForkExec, which takes
// syscall.ForkLock for writing.
func HoldForks() (release func()) {
	syscall.ForkLock.RLock()
	return syscall.ForkLock.RUnlock
}

// ErrUnsafeFile is returned by the safe file helpers for a name that is a
// symbolic link, a FIFO, a device, a socket or a directory where a regular
// file was expected, or that would leave the directory.
var ErrUnsafeFile = errors.New("sandbox: refusing unsafe file")

// ErrTooLarge is returned by [ReadFileSafe] for a file larger than its cap.
var ErrTooLarge = errors.New("sandbox: file too large")

// OpenNoFollow opens the regular file name, relative to the trusted
// directory dir, for reading. No component of name may be a symbolic link
// ("..", absolute names and empty components are refused too), and the file
// must be a regular file: FIFOs, devices and sockets are refused without
// blocking. Use it for every file a sandboxed program could have touched.
func OpenNoFollow(dir, name string) (*os.File, error) {
	d, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(d)
	fd, err := openRegularAt(d, name)
	if err != nil {
		return nil, fmt.Errorf("sandbox: open %s in %s: %w", name, dir, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// ReadFileSafe reads the regular file name in dir like [OpenNoFollow]
// opens it, and fails with ErrTooLarge past max bytes.
func ReadFileSafe(dir, name string, max int64) ([]byte, error) {
	f, err := OpenNoFollow(dir, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("sandbox: read %s: %w (more than %d bytes)", name, ErrTooLarge, max)
	}
	return b, nil
}

// WriteFileSafe writes data to name in dir as a new file (a temporary file
// renamed over name), so it never writes through a symbolic link or a hard
// link planted at name. Parent components must be real directories.
func WriteFileSafe(dir, name string, data []byte, perm os.FileMode) error {
	d, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	err = writeAt(d, name, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("sandbox: write %s in %s: %w", name, dir, err)
	}
	return nil
}

func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// splitName checks a relative name and splits it into components.
func splitName(name string) ([]string, error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return nil, ErrUnsafeFile
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, ErrUnsafeFile
		}
	}
	return parts, nil
}

// openParentAt walks all but the last component of name below dirfd,
// refusing symbolic links, and returns the parent's fd and the last name.
func openParentAt(dirfd int, name string) (int, string, error) {
	parts, err := splitName(name)
	if err != nil {
		return -1, "", err
	}
	cur, err := unix.Dup(dirfd)
	if err != nil {
		return -1, "", err
	}
	for _, p := range parts[:len(parts)-1] {
		next, err := unix.Openat(cur, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			if err == unix.ELOOP || err == unix.ENOTDIR {
				err = ErrUnsafeFile
			}
			return -1, "", err
		}
		cur = next
	}
	return cur, parts[len(parts)-1], nil
}

// openRegularAt opens name below dirfd read-only if it is a regular file.
func openRegularAt(dirfd int, name string) (int, error) {
	parent, last, err := openParentAt(dirfd, name)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, last, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, ErrUnsafeFile
	}
	fd, err := unix.Openat(parent, last, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP {
			err = ErrUnsafeFile
		}
		return -1, err
	}
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil || st2.Mode&unix.S_IFMT != unix.S_IFREG || st2.Ino != st.Ino || st2.Dev != st.Dev {
		unix.Close(fd)
		return -1, ErrUnsafeFile
	}
	return fd, nil
}

var tmpSeq atomic.Uint64

// writeAt creates name below dirfd through a temporary file filled by fill
// and renamed over name. An existing directory at name is refused.
func writeAt(dirfd int, name string, perm os.FileMode, fill func(*os.File) error) error {
	parent, last, err := openParentAt(dirfd, name)
	if err != nil {
		return err
	}
	defer unix.Close(parent)
	var st unix.Stat_t
	if err := unix.Fstatat(parent, last, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return ErrUnsafeFile
	}
	tmp := ".kiln-tmp-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(tmpSeq.Add(1), 10)
	release := HoldForks()
	fd, err := unix.Openat(parent, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		release()
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	release()
	if err == nil {
		err = unix.Fchmodat(parent, tmp, uint32(perm.Perm()), 0)
	}
	if err == nil {
		err = unix.Renameat(parent, tmp, parent, last)
	}
	if err != nil {
		unix.Unlinkat(parent, tmp, 0)
	}
	return err
}
