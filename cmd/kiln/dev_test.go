package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDevPrintsWorkingRunCommand starts `kiln dev` as a user would, takes
// the export line it prints, and runs a program with exactly that.
func TestDevPrintsWorkingRunCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	dev := startKiln(t, "dev", "dev", "--dir", dir, "--client-addr", freeAddr(t), "--slave-addr", freeAddr(t),
		"--local-slots", "1", "--console", "off")
	dev.waitOutput(t, "slave registered", 1)
	m := regexp.MustCompile(`export (KILN_BUNDLE=\S+) (KILN_MASTER=\S+)`).FindStringSubmatch(dev.out.String())
	if m == nil {
		t.Fatalf("kiln dev printed no export line:\n%s", dev.out.String())
	}
	prog := writeFile(t, t.TempDir(), "dev.py", "print('hello from kiln dev')\n")
	code, out, errs := kilnCmd(t, []string{m[1], m[2]}, "run", prog)
	if code != 0 || !strings.Contains(out, "hello from kiln dev") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if !strings.Contains(dev.out.String(), "kiln run examples/hello.c") {
		t.Errorf("kiln dev did not print the run command:\n%s", dev.out.String())
	}
}
