package tui

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the dependency arrows: the terminal client knows the
// client library and the wire format, never the master or the slave.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "kiln/client/tui").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p == "kiln/master" || strings.HasPrefix(p, "kiln/slave") || strings.HasPrefix(p, "kiln/cmd") {
			t.Errorf("kiln/client/tui imports %s", p)
		}
	}
}
