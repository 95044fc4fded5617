package main

import (
	"context"
	"strings"
	"testing"
)

// TestLoadtestUsage: bad rates or counts are usage errors, named, before
// anything starts; --help exits 0 and describes the run.
func TestLoadtestUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--rates", "100,fast"},
		{"--rates", "0"},
		{"--slaves", "0"},
		{"--sessions", "-1"},
	} {
		code, _, errs := runCLI(context.Background(), t, nil, append([]string{"loadtest"}, args...)...)
		if code != exitUsage || !strings.Contains(errs, "kiln loadtest") {
			t.Errorf("loadtest %v: exit %d, stderr %q", args, code, errs)
		}
	}
	code, _, errs := runCLI(context.Background(), t, nil, "loadtest", "--help")
	if code != 0 || !strings.Contains(errs, "simulated slaves") {
		t.Errorf("--help: exit %d, %q", code, errs)
	}
}
