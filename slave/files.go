package slave

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"kiln/slave/sandbox"
)

// errNotRegular is returned when a job directory entry is a symlink, FIFO,
// device or directory where a regular file was expected.
var errNotRegular = errors.New("not a regular file")

// errOverCap reports a file over the size readRegular was allowed.
var errOverCap = errors.New("over the cap")

// readRegular reads the regular file at path, at most max bytes. It never
// follows a final symlink and never blocks on a FIFO: the job's programs
// can plant either in their work directory.
func readRegular(path string, max int64) ([]byte, fs.FileMode, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			err = errNotRegular
		}
		return nil, 0, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s: %w (%v)", path, errNotRegular, fi.Mode().Type())
	}
	if fi.Size() > max {
		return nil, 0, fmt.Errorf("%s: %d bytes, %w of %d", path, fi.Size(), errOverCap, max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, 0, err
	}
	if int64(len(data)) > max {
		return nil, 0, fmt.Errorf("%s: grew %w of %d", path, errOverCap, max)
	}
	return data, fi.Mode().Perm(), nil
}

// writeNew creates dir/name, which must not exist yet, without following
// symlinks, and writes data to it.
func writeNew(dir, name string, data []byte, perm fs.FileMode) error {
	path := filepath.Join(dir, name)
	defer sandbox.HoldForks()() // the file may be a program to run
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm))
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// removeTree removes dir even when the job left directories without write
// or search permission in it.
func removeTree(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
