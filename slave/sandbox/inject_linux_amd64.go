package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// System calls made inside a traced process. Go runs nothing in a child
// between fork and exec, and a re-executed Go helper would cost a Go
// start-up per job (~1.5 ms for a small binary, ~6 ms for kiln's package
// initialisers) and leave its own resident set in the job's ru_maxrss. So
// the init lets the kernel stop the job's first process right after
// execve (PTRACE_TRACEME), before it runs any instruction of its own, and
// makes it execute the few system calls that must come from the process
// itself: it borrows the two bytes at the entry point for a `syscall`
// instruction, loads the registers, single-steps, reads the result, and
// finally puts back the bytes and the registers.

var syscallInsn = [2]byte{0x0f, 0x05} // amd64 `syscall`

// tracee is a process stopped under the init's ptrace, into which the
// init makes system calls. Only the thread that traces it may use it.
type tracee struct {
	pid   int
	regs  unix.PtraceRegs // at the stop; restored by restore
	site  uintptr         // where the `syscall` instruction is borrowed
	saved [8]byte         // the original bytes at site
}

// borrow prepares a stopped tracee for injected system calls.
func borrow(pid int) (*tracee, error) {
	t := &tracee{pid: pid}
	if err := unix.PtraceGetRegs(pid, &t.regs); err != nil {
		return nil, fmt.Errorf("getregs: %w", err)
	}
	t.site = uintptr(t.regs.Rip)
	if _, err := unix.PtracePeekText(pid, t.site, t.saved[:]); err != nil {
		return nil, fmt.Errorf("peek: %w", err)
	}
	patched := t.saved
	copy(patched[:], syscallInsn[:])
	if _, err := unix.PtracePokeText(pid, t.site, patched[:]); err != nil {
		return nil, fmt.Errorf("poke: %w", err)
	}
	return t, nil
}

// adopt returns a tracee for child, a fork of t made by an injected call:
// same memory (with the borrowed instruction), same saved state.
func (t *tracee) adopt(child int) *tracee {
	c := *t
	c.pid = child
	return &c
}

// scratch is an address of n bytes of the tracee's stack below the red
// zone, 16-byte aligned. The stack area below the pointer at exec time is
// mapped (the kernel grows the initial stack by 128 KiB) and unused.
func (t *tracee) scratch(n int) uintptr {
	return uintptr(t.regs.Rsp-128-uint64(n)) &^ 15
}

// write copies b into the tracee at addr.
func (t *tracee) write(addr uintptr, b []byte) error {
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	n, err := unix.ProcessVMWritev(t.pid, local, []unix.RemoteIovec{{Base: addr, Len: len(b)}}, 0)
	if err == nil && n != len(b) {
		err = fmt.Errorf("short write %d/%d", n, len(b))
	}
	return err
}

// load sets the registers for system call nr with args at the borrowed
// instruction.
func (t *tracee) load(nr uintptr, args ...uint64) error {
	r := t.regs
	r.Rip = uint64(t.site)
	r.Rax = uint64(nr)
	r.Orig_rax = ^uint64(0) // not in a system call: no restart on resume
	for i, p := range []*uint64{&r.Rdi, &r.Rsi, &r.Rdx, &r.R10, &r.R8, &r.R9} {
		if i < len(args) {
			*p = args[i]
		}
	}
	return unix.PtraceSetRegs(t.pid, &r)
}

// call makes the tracee execute system call nr and returns its result
// (negative errno on failure).
func (t *tracee) call(nr uintptr, args ...uint64) (int64, error) {
	if err := t.load(nr, args...); err != nil {
		return 0, fmt.Errorf("setregs: %w", err)
	}
	if err := unix.PtraceSingleStep(t.pid); err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	if err := waitStop(t.pid, unix.SIGTRAP); err != nil {
		return 0, err
	}
	var r unix.PtraceRegs
	if err := unix.PtraceGetRegs(t.pid, &r); err != nil {
		return 0, fmt.Errorf("getregs: %w", err)
	}
	return int64(r.Rax), nil
}

// mustCall is call for calls that must succeed.
func (t *tracee) mustCall(name string, nr uintptr, args ...uint64) error {
	rc, err := t.call(nr, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if rc < 0 && rc > -4096 {
		return fmt.Errorf("%s: %w", name, unix.Errno(-rc))
	}
	return nil
}

// fork makes the tracee fork and returns the child's pid. The tracee must
// trace forks (PTRACE_O_TRACEFORK); the child starts traced and stopped.
// The tracee is left in the fork event stop, to be killed. It is
// single-stepped, so that a failed fork stops it right after the call
// instead of letting it run on.
func (t *tracee) fork() (int, error) {
	if err := t.load(unix.SYS_FORK); err != nil {
		return 0, fmt.Errorf("setregs: %w", err)
	}
	if err := unix.PtraceSingleStep(t.pid); err != nil {
		return 0, fmt.Errorf("step: %w", err)
	}
	ws, err := waitPid(t.pid)
	if err != nil {
		return 0, err
	}
	if ws.Stopped() && ws.StopSignal() == unix.SIGTRAP && ws.TrapCause() <= 0 {
		var r unix.PtraceRegs
		if err := unix.PtraceGetRegs(t.pid, &r); err == nil && int64(r.Rax) < 0 {
			return 0, fmt.Errorf("fork: %w", unix.Errno(-int64(r.Rax)))
		}
	}
	if !ws.Stopped() || ws.TrapCause() != unix.PTRACE_EVENT_FORK {
		return 0, fmt.Errorf("fork: %w (status %#x)", errDied, uint32(ws))
	}
	msg, err := unix.PtraceGetEventMsg(t.pid)
	if err != nil {
		return 0, fmt.Errorf("fork event: %w", err)
	}
	child := int(msg)
	if err := waitStop(child, unix.SIGSTOP); err != nil {
		return child, err
	}
	return child, nil
}

// installFilter copies the assembled filter prog (sock_filter array) into
// the tracee and makes it load it with seccomp(2) and TSYNC.
func (t *tracee) installFilter(prog []byte) error {
	n := len(prog) / 8
	buf := make([]byte, 16+len(prog)) // struct sock_fprog, then the program
	addr := t.scratch(len(buf))
	*(*uint16)(unsafe.Pointer(&buf[0])) = uint16(n)
	*(*uint64)(unsafe.Pointer(&buf[8])) = uint64(addr) + 16
	copy(buf[16:], prog)
	if err := t.write(addr, buf); err != nil {
		return fmt.Errorf("copy filter: %w", err)
	}
	return t.mustCall("seccomp", unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uint64(addr))
}

// restore puts back the borrowed bytes and the registers of the stop.
func (t *tracee) restore() error {
	if _, err := unix.PtracePokeText(t.pid, t.site, t.saved[:]); err != nil {
		return fmt.Errorf("poke back: %w", err)
	}
	r := t.regs
	r.Orig_rax = ^uint64(0) // resume as from a signal stop, with no restart
	if err := unix.PtraceSetRegs(t.pid, &r); err != nil {
		return fmt.Errorf("setregs: %w", err)
	}
	return nil
}
