package main

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// threadSlacks reads the timer slack of every thread of the process.
func threadSlacks(t *testing.T) map[string]int64 {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + task.Name() + "/timerslack_ns")
		if err != nil {
			continue // the thread has exited
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		m[task.Name()] = n
	}
	return m
}

// TestWithTimerSlack: every thread of the process gets the bench's slack,
// and the restore gives every thread there is then the slack of before,
// so that the bare run's programs inherit that.
func TestWithTimerSlack(t *testing.T) {
	orig, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Skipf("PR_GET_TIMERSLACK: %v", err)
	}
	restore := withTimerSlack(benchSlack)
	for tid, ns := range threadSlacks(t) {
		if ns != benchSlack.Nanoseconds() {
			t.Errorf("thread %s: slack %d ns, want %d", tid, ns, benchSlack.Nanoseconds())
		}
	}
	// A goroutine locked to its thread meanwhile (a new one, or one the
	// runtime had): the restore covers whatever threads there are then.
	done := make(chan struct{})
	hold := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		close(done)
		<-hold
	}()
	<-done
	restore()
	restore() // once
	for tid, ns := range threadSlacks(t) {
		if ns != int64(orig) {
			t.Errorf("thread %s after the restore: slack %d ns, want %d", tid, ns, orig)
		}
	}
	close(hold)
}
