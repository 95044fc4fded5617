package sandbox

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkJobCleanup times what the init does after every job so that
// the next one finds nothing of it: clearSysV and leftSockets.any
// (collectUnixGarbage only runs after a job that left sockets). clearSysV
// removes every System V object of its IPC namespace: it runs on a thread
// of its own in a new one, which the runtime discards with the goroutine,
// never in the test's.
func BenchmarkJobCleanup(b *testing.B) {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWIPC); err != nil {
			errc <- err
			return
		}
		var left leftSockets
		for b.Loop() {
			clearSysV()
			left.any()
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		b.Skipf("no IPC namespace of its own (%v): clearSysV would clear the test's", err)
	}
}
