package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A broken languages file stops kiln slave at start, naming the file, the
// line and the reason, before it dials anything.
func TestSlaveRefusesBrokenLanguagesFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "langs.json")
	data := "{\"languages\": [\n  {\"name\": \"go\",\n   \"complie\": [\"go\", \"build\"]}\n]}\n"
	if err := os.WriteFile(bad, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(context.Background(), t, nil, "slave", "--bundle", filepath.Join(dir, "none.bundle"),
		"--master", "127.0.0.1:1", "--languages", bad)
	if code == 0 || !strings.Contains(stderr, bad+":3:") || !strings.Contains(stderr, `unknown field "complie"`) {
		t.Fatalf("exit %d, stderr %q; want the file, line 3 and the unknown field", code, stderr)
	}
}
