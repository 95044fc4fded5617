package main

import (
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// withTimerSlack gives every thread of the process d of timer slack
// (threads made later inherit it from the thread that makes them) and
// returns what gives them back the calling thread's slack of before
// (once; later calls do nothing). The Go runtime's monitor thread (sysmon)
// sleeps 20 µs at a time after each wake-up of an idle process, for up to
// 50 rounds; with the default slack of 50 µs each round is a wake-up and
// a context switch, ~10 per job of the bench client and 15 % of its CPU.
// With d of slack its short sleeps end with the next timer interrupt.
// Only timers are late by up to d, and the bench client has none on a
// job's path (network and goroutine wake-ups are not timers). Where the
// slack cannot be read or set it does nothing.
func withTimerSlack(d time.Duration) (restore func()) {
	orig, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil || orig <= 0 || d <= 0 {
		return func() {}
	}
	setThreadsSlack(int64(d))
	return sync.OnceFunc(func() { setThreadsSlack(int64(orig)) })
}

// setThreadsSlack sets the timer slack of the calling thread and of every
// other thread of the process to ns.
func setThreadsSlack(ns int64) {
	unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0)
	tasks, _ := os.ReadDir("/proc/self/task")
	v := []byte(strconv.FormatInt(ns, 10))
	for _, t := range tasks {
		// The per-thread file is /proc/TID/timerslack_ns (task/TID has none).
		os.WriteFile("/proc/"+t.Name()+"/timerslack_ns", v, 0)
	}
}
