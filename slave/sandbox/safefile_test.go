//go:build unix

package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestSafeFiles(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "ok"), []byte("ok"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sub", "f"), []byte("f"), 0o644))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "link")))
	must(os.Symlink(outside, filepath.Join(dir, "dirlink")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(os.Link(filepath.Join(outside, "secret"), filepath.Join(dir, "hard")))
	if os.Geteuid() == 0 {
		must(syscall.Mknod(filepath.Join(dir, "null"), syscall.S_IFCHR|0o666, 1<<8|3))
	}

	if b, err := ReadFileSafe(dir, "ok", 10); err != nil || string(b) != "ok" {
		t.Fatalf("ok: %q %v", b, err)
	}
	if b, err := ReadFileSafe(dir, "sub/f", 10); err != nil || string(b) != "f" {
		t.Fatalf("sub/f: %q %v", b, err)
	}
	if _, err := ReadFileSafe(dir, "ok", 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("cap: %v", err)
	}
	for _, name := range []string{"link", "dirlink/secret", "fifo", "null", "sub", "../" + filepath.Base(outside) + "/secret", "/etc/passwd", "sub/../ok", "", "missing"} {
		done := make(chan error, 1)
		go func() { _, err := ReadFileSafe(dir, name, 100); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%q: read through", name)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%q: blocked", name)
		}
	}
	// Writing over a symbolic link or a hard link replaces the name only.
	for _, name := range []string{"link", "hard", "fifo"} {
		if err := WriteFileSafe(dir, name, []byte("new"), 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		if b, err := ReadFileSafe(dir, name, 10); err != nil || string(b) != "new" {
			t.Fatalf("%s after write: %q %v", name, b, err)
		}
	}
	if err := WriteFileSafe(dir, "dirlink/x", []byte("x"), 0o644); err == nil {
		t.Fatal("wrote through a symlinked directory")
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "secret" {
		t.Fatalf("outside file changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Fatal("file created outside")
	}
	f, err := OpenNoFollow(dir, "sub/f")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}
