// Package statetest helps tests of the durable state and of the master
// that keeps it.
package statetest

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
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
