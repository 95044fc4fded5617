package testenv

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a test was stopped.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmtf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmtf(format, args...)
}

func TestNeedFailsUnderCIAndSkipsLoudlyElsewhere(t *testing.T) {
	missing := errors.New("no such thing")
	for _, tc := range []struct {
		ci         string
		fail, skip bool
	}{{"true", true, false}, {"1", true, false}, {"", false, true}, {"false", false, true}} {
		t.Setenv("CI", tc.ci)
		r := &recorder{TB: t}
		Need(r, "a widget", missing)
		if (r.failed != "") != tc.fail || (r.skipped != "") != tc.skip {
			t.Errorf("CI=%q: failed %q skipped %q", tc.ci, r.failed, r.skipped)
		}
		if tc.skip && (!strings.HasPrefix(r.skipped, SkipPrefix) || !strings.Contains(r.skipped, "a widget") || !strings.Contains(r.skipped, "no such thing")) {
			t.Errorf("skip message %q does not say what was missing", r.skipped)
		}
		if tc.fail && !strings.Contains(r.failed, "a widget") {
			t.Errorf("failure %q does not say what was missing", r.failed)
		}
	}
}

func TestNeedMet(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	Need(r, "a widget", nil)
	File(r, "/")
	if r.failed != "" || r.skipped != "" {
		t.Errorf("a need that is met stopped the test: %q %q", r.failed, r.skipped)
	}
	File(r, "/no/such/file")
	if r.failed == "" {
		t.Error("a missing file did not fail under CI")
	}
}

func fmtf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
