// Package testenv says what a test needs from the machine it runs on, so
// that a machine lacking it never turns a test green without running it.
//
// A test that needs root, a kernel feature or a program calls [Need] (or
// [Root], [Command], [File]) before anything else. When the need is not
// met, the test fails under continuous integration (CI=true: a CI machine
// must provide everything the suite tests) and is skipped elsewhere with a
// message that starts with [SkipPrefix] and says what was missing. `make
// test` counts and lists those skips at its end.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// SkipPrefix starts every skip message of this package.
const SkipPrefix = "MISSING:"

// CI reports whether the tests run under continuous integration: the CI
// environment variable is "true" or "1", as CI services set it.
func CI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// Need stops t when what is not available here; missing says why (nil:
// available, and Need returns). Under [CI] the test fails, elsewhere it is
// skipped loudly.
func Need(t testing.TB, what string, missing error) {
	t.Helper()
	if missing == nil {
		return
	}
	if CI() {
		t.Fatalf("this test needs %s, which CI must provide: %v", what, missing)
		return
	}
	t.Skipf("%s this test needs %s: %v (with CI=true this is a failure)", SkipPrefix, what, missing)
}

// ErrNotRoot is why [Root] stops a test run by another user.
var ErrNotRoot = errors.New("not running as root")

// Root stops t unless it runs as root; why says what root is needed for
// (for example "cgroups and uid mappings").
func Root(t testing.TB, why string) {
	t.Helper()
	var missing error
	if os.Geteuid() != 0 {
		missing = fmt.Errorf("%w (euid %d)", ErrNotRoot, os.Geteuid())
	}
	Need(t, "root for "+why, missing)
}

// Command stops t unless the program name is on PATH, and returns its path.
func Command(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	Need(t, "the program "+name, err)
	return path
}

// File stops t unless path exists (a program at a fixed place, a device).
func File(t testing.TB, path string) {
	t.Helper()
	_, err := os.Stat(path)
	Need(t, path, err)
}
