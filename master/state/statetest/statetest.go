// Package statetest helps tests of the durable state and of the master
// that keeps it.
package statetest

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"kiln/internal/testenv"
)

// CrashImage copies the files of a data directory to a new one: what a
// crash of the master leaves on disk, when taken while nothing is being
// written. The copy is removed with the test.
func CrashImage(t testing.TB, dir string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// SmallDisk mounts a tmpfs of size bytes on a new directory, unmounted
// at cleanup, for tests of a full disk. It needs root and mount: under
// CI their lack fails the test, elsewhere it skips (testenv).
func SmallDisk(t testing.TB, size int) string {
	t.Helper()
	testenv.Root(t, "mounting a small tmpfs")
	dir := t.TempDir() // removed after the unmount below (cleanups run last first)
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
	}
	testenv.Need(t, "a tmpfs mount", err)
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
