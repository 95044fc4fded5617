package slave

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// TestHealth: a slave whose work directory cannot take a file, or whose
// file system is too full, says so instead of taking jobs it would fail.
func TestHealth(t *testing.T) {
	root := filepath.Join(t.TempDir(), "work")
	cache, err := NewCache(filepath.Join(t.TempDir(), "cache"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExecutor(ExecConfig{WorkRoot: root, Runner: &sandbox.Plain{}, Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	if msg := e.Health(DefaultMinFree); msg != "" {
		t.Fatalf("healthy directories reported %q", msg)
	}
	if msg := e.Health(1 << 62); !strings.Contains(msg, "MiB free") {
		t.Fatalf("a file system under the free-space floor: got %q", msg)
	}
	// The work root replaced by a file (root ignores permission bits, so
	// a read-only mode would not stop this test's writes).
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := e.Health(DefaultMinFree); !strings.Contains(msg, "not writable") {
		t.Fatalf("unwritable work root: got %q", msg)
	}
}

// failingRunner fails every step as a broken disk or sandbox would.
type failingRunner struct{}

func (failingRunner) Name() string { return "failing" }
func (failingRunner) Run(context.Context, sandbox.Spec) (sandbox.Outcome, error) {
	return sandbox.Outcome{}, errors.New("no space left on device")
}

// TestInternalErrorIsSlaveFault: a job that fails inside the slave (not
// in the program) says so, so that the master runs it elsewhere.
func TestInternalErrorIsSlaveFault(t *testing.T) {
	e, err := NewExecutor(ExecConfig{WorkRoot: t.TempDir(), Runner: failingRunner{},
		Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 3", Path: "/usr/bin/python3"}}})
	if err != nil {
		t.Fatal(err)
	}
	res := e.Execute(context.Background(), Job{ID: "J1", Attempt: 1, Language: "python", FileName: "a.py",
		Source: []byte("print(1)\n")}, nil)
	if res.Status != wire.StatusInternalError || !res.SlaveFault {
		t.Fatalf("got %+v, want internal_error marked as the slave's fault", res)
	}
	res = e.Execute(context.Background(), Job{ID: "J2", Attempt: 1, Language: "c", FileName: "a.c", Source: []byte("x")}, nil)
	if res.Status != wire.StatusInternalError || !res.SlaveFault {
		t.Fatalf("no toolchain: got %+v, want the slave's fault", res)
	}
}
