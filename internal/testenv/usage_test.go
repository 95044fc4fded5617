package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNeedsGoThroughTestenv: no test of the module skips by hand for want
// of root or a program (a skip right after os.Geteuid, exec.LookPath or
// os.Stat); such needs go through this package, so that CI fails on them
// and `make test` lists them.
func TestNeedsGoThroughTestenv(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") || strings.Contains(path, filepath.Join("internal", "testenv")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lines := strings.Split(string(b), "\n")
		for i, l := range lines {
			if !strings.Contains(l, ".Skip(") && !strings.Contains(l, ".Skipf(") {
				continue
			}
			for _, prev := range lines[max(0, i-3):i] {
				if strings.Contains(prev, "Geteuid()") || strings.Contains(prev, "exec.LookPath(") || strings.Contains(prev, "os.Stat(") {
					t.Errorf("%s:%d skips by hand for a missing need; use testenv.Root, Command, File or Need", path, i+1)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
