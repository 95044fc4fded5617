package sandbox

import (
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The init's Go runtime and its jobs' CPUs. The runtime's monitor thread
// (sysmon) sleeps 20 µs at a time whenever it was woken by a system call
// after a deep sleep or took a P back from one, doubling the sleep only
// after 50 rounds; on this kernel a 20 µs sleep ends after ~70 µs (the
// default timer slack is 50 µs). A sandbox's fork thread makes dozens of
// system calls per job, so the monitor ran ~17 rounds per back-to-back
// cached C job and up to ~60 per job further apart, each a wake-up and a
// context switch, on the job's CPU as often as not (docs/performance.md,
// "The sandbox's own CPU"). The monitor is what any thread of the init
// but the fork thread is: every one of them gets monitorSlack of timer
// slack, so that its short sleeps end with the next timer interrupt of
// its CPU rather than 20 µs later (the monitor's duties in the init, taking
// a P back from a long system call and preempting a goroutine that runs
// for 10 ms, tolerate that; the init has no timers on a job's path). The
// fork thread sets its own slack back to the one the init started with,
// the slave's, which every job inherits from it: a job's sleeps are what
// they are outside the sandbox.

// monitorSlack is the timer slack of the init's threads other than the
// fork thread: one tick of a 250 Hz kernel.
const monitorSlack = 4 * time.Millisecond

// slowRuntimeThreads gives the calling thread and every other thread of
// the process monitorSlack of timer slack (threads made later inherit it
// from the thread that makes them) and returns the calling thread's slack
// before, which the fork thread takes back (restoreSlack). It must run
// before the syscall filter is loaded and before the fork thread exists.
func slowRuntimeThreads() int {
	orig, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		return 0
	}
	unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(monitorSlack), 0, 0, 0)
	tasks, _ := os.ReadDir("/proc/self/task")
	slack := []byte(strconv.FormatInt(int64(monitorSlack), 10))
	for _, t := range tasks {
		// The per-thread file is /proc/TID/timerslack_ns (task/TID has
		// none); the init still sees the slave's /proc, and its TIDs.
		os.WriteFile("/proc/"+t.Name()+"/timerslack_ns", slack, 0)
	}
	return orig
}

// restoreSlack gives the calling thread the timer slack ns (when known).
func restoreSlack(ns int) error {
	if ns <= 0 {
		return nil
	}
	return unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0)
}
