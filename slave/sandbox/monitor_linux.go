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
// fork thread sets its own slack to jobTimerSlack, which every job
// inherits from it: a job's sleeps are what they are in any process
// started normally, whatever slack the slave's own threads have.

// monitorSlack is the timer slack of the init's threads other than the
// fork thread: one tick of a 250 Hz kernel.
const monitorSlack = 4 * time.Millisecond

// jobTimerSlack is the jobs' timer slack: the kernel's default, PID 1's,
// which every process inherits unless it changes its own.
const jobTimerSlack = 50 * time.Microsecond

// slowRuntimeThreads gives the calling thread and every other thread of
// the process monitorSlack of timer slack (threads made later inherit it
// from the thread that makes them). It must run before the fork thread
// exists, which sets its own (jobSlack).
func slowRuntimeThreads() {
	unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(monitorSlack), 0, 0, 0)
	tasks, _ := os.ReadDir("/proc/self/task")
	slack := []byte(strconv.FormatInt(int64(monitorSlack), 10))
	for _, t := range tasks {
		// The per-thread file is /proc/TID/timerslack_ns (task/TID has
		// none); the init still sees the slave's /proc, and its TIDs.
		os.WriteFile("/proc/"+t.Name()+"/timerslack_ns", slack, 0)
	}
}

// jobSlack gives the calling thread, the fork thread, jobTimerSlack.
func jobSlack() error {
	return unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(jobTimerSlack), 0, 0, 0)
}
