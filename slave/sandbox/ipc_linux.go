package sandbox

import (
	"bytes"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// System V IPC commands (linux/ipc.h, shm.h, msg.h, sem.h).
const (
	ipcRMID  = 0
	shmStat  = 13
	shmInfo  = 14
	msgStat  = 11
	msgInfo  = 12
	semStat  = 18
	semInfo  = 19
	ipcBufSz = 256 // larger than every *_ds and *_info struct of these calls
)

// clearSysV removes every System V shared memory segment, message queue
// and semaphore set of the calling thread's IPC namespace. The fork thread
// calls it in a job's namespace once every process of the job is gone,
// before the job is reported done: a segment nobody attached is freed at
// once, with the memory charged for it to the slot's cgroup. Left to the
// namespace's end (after the next job's namespace is made, and then in
// the kernel's own time) another client's next job on the slot found it
// charged: a limit lower than that charge could not be set (EBUSY), and
// the job failed as the slave's fault (TestPooledSlotFreesSysVMemory).
func clearSysV() {
	var buf [ipcBufSz]byte
	p := uintptr(unsafe.Pointer(&buf))
	for _, k := range []struct{ sys, info, stat uintptr }{
		{unix.SYS_SHMCTL, shmInfo, shmStat},
		{unix.SYS_MSGCTL, msgInfo, msgStat},
		{unix.SYS_SEMCTL, semInfo, semStat},
	} {
		call := func(id, cmd uintptr) (uintptr, unix.Errno) {
			if k.sys == unix.SYS_SEMCTL {
				r, _, e := unix.Syscall6(k.sys, id, 0, cmd, p, 0, 0)
				return r, e
			}
			r, _, e := unix.Syscall(k.sys, id, cmd, p)
			return r, e
		}
		maxIdx, e := call(0, k.info)
		if e != 0 || int(maxIdx) < 0 {
			continue
		}
		for idx := uintptr(0); idx <= maxIdx; idx++ {
			if id, e := call(idx, k.stat); e == 0 {
				call(id, ipcRMID)
			}
		}
	}
}

// collectUnixGarbage sets off the kernel's garbage collector of unix
// sockets, which frees sockets that only refer to each other through the
// descriptors in flight in their queues, and those descriptors. A job can
// leave such a cycle holding memfds (150 MiB of them: each under the
// run's file size limit), charged to the slot's memory cgroup and, on
// this machine's kernel (6.18), kept until some socket holding a
// descriptor in flight is closed: more than 8 s with nothing else running,
// and past the sandbox's end too. Closing one of its own does that: a
// socket pair, one end sent over the other, both closed (12 µs). Called
// by the fork thread when a job left sockets behind (leftSockets)
// (TestPooledSlotWaitsForLeftMemory).
func collectUnixGarbage() {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	_ = unix.Sendmsg(fds[0], []byte{0}, unix.UnixRights(fds[0]), nil, 0)
	unix.Close(fds[0])
	unix.Close(fds[1])
}

// leftSockets tells whether sockets are left in the sandbox's network
// namespace once every process of a job is gone: sockets that a cycle of
// unix sockets keeps in flight, which the kernel's collector frees in its
// own time, after the next job may have started. Until then a name the
// job bound (an abstract unix socket, an inet port) was still bound for
// another client's next job on the slot: it could not bind it, and could
// read the job's names as a channel (TestPooledSlotLeavesNoSocketCycle).
// The init's own sockets were made in the slave's namespace, so a clean
// run leaves none. The fork thread keeps the count's file open (2 µs a
// job, 21 µs opened each time).
type leftSockets struct {
	f   *os.File // /proc/self/net/sockstat, in the sandbox's namespace
	buf [128]byte
}

// any reports whether the namespace holds a socket, or its count cannot
// be read.
func (l *leftSockets) any() bool {
	if l.f == nil {
		f, err := os.Open("/proc/self/net/sockstat")
		if err != nil {
			return true
		}
		l.f = f
	}
	n, err := l.f.ReadAt(l.buf[:], 0)
	if n == 0 && err != nil {
		return true
	}
	line, _, _ := bytes.Cut(l.buf[:n], []byte("\n"))
	return !bytes.Equal(bytes.TrimSpace(line), []byte("sockets: used 0"))
}

// noMessageQueues sets the init's RLIMIT_MSGQUEUE, which every job
// inherits, to 0: no job may create a POSIX message queue. A queue's bytes
// count against the job's user (the slot's, the same for every client's
// job on it) until the job's IPC namespace is freed, which the kernel
// does in its own time: another client's next job on the slot found the
// quota spent and mq_open failed (EMFILE), for several jobs in a row
// (TestPooledSlotLeavesNoMessageQueues). Set once per sandbox: nothing
// per job.
func noMessageQueues() error {
	return unix.Setrlimit(unix.RLIMIT_MSGQUEUE, &unix.Rlimit{})
}
