package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"path"
	"strings"
	"testing"
)

// TestDependencyArrows enforces the design's layering with `go list -deps`:
// cmd → master/slave/client → transport → auth → certs, leaves that import
// nothing of Kiln, and no UI library outside the TUI.
func TestDependencyArrows(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string // import path prefixes
	}{
		{"kiln/certs", []string{"kiln/"}},
		{"kiln/auth", []string{"kiln/transport", "kiln/master", "kiln/slave", "kiln/client"}},
		{"kiln/transport", []string{"kiln/master", "kiln/slave", "kiln/client"}},
		{"kiln/transport/wire", []string{"kiln/", "github.com/hashicorp/yamux"}},
		{"kiln/transport/seal", []string{"kiln/", "github.com/vmihailenco/msgpack"}},
		{"kiln/master", []string{"kiln/slave", "kiln/client", "github.com/rivo/tview", "github.com/gdamore/tcell"}},
		{"kiln/master/state", []string{"kiln/auth", "kiln/certs", "kiln/slave", "kiln/client", "kiln/transport/seal", "github.com/hashicorp/yamux"}},
		{"kiln/slave", []string{"kiln/master", "kiln/client", "github.com/rivo/tview", "github.com/gdamore/tcell"}},
		{"kiln/slave/sandbox", []string{"kiln/"}},
		{"kiln/client", []string{"kiln/master", "kiln/slave", "github.com/rivo/tview", "github.com/gdamore/tcell"}},
		{"kiln/client/tui", []string{"kiln/master", "kiln/slave", "kiln/cmd"}},
	}
	for _, r := range rules {
		deps := goListDeps(t, r.pkg)
		for _, d := range deps {
			if d == r.pkg {
				continue
			}
			for _, f := range r.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s, which the design forbids (%s)", r.pkg, d, f)
				}
			}
		}
	}
	for _, p := range goListDeps(t, "./...") {
		if !strings.HasPrefix(p, "kiln/") {
			continue
		}
		switch path.Base(p) {
		case "util", "utils", "common", "misc":
			t.Errorf("package %s: no util/common/misc packages", p)
		}
	}
}

// goListDeps returns pkg and everything it imports (not its tests).
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-json=ImportPath", pkg)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var deps []string
	dec := json.NewDecoder(out)
	for {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		deps = append(deps, p.ImportPath)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	if len(deps) == 0 {
		t.Fatalf("go list -deps %s listed nothing", pkg)
	}
	return deps
}
