package sandbox

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
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
// itself: it points the instruction pointer at a `syscall` instruction,
// loads the registers, single-steps, reads the result, and finally puts
// back the registers. The instruction is one of the vDSO's, which the
// kernel maps into every process (same image, its base in the auxiliary
// vector above the stack pointer at the exec stop), so nothing of the
// job's memory is written but the stack below its red zone. Without a
// vDSO the init borrows the two bytes at the entry point instead and puts
// them back: each such write copies the page (ptrace writes through
// copy-on-write), ~27 µs of a job's start in all (docs/performance.md,
// "The sandbox's own CPU per job").

var syscallInsn = [2]byte{0x0f, 0x05} // amd64 `syscall`

// vdsoSyscall returns the offset of a `syscall` instruction in the calling
// process's vDSO, or -1. Any two bytes 0f 05 are one when jumped to.
func vdsoSyscall() int {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != "[vdso]" || !strings.Contains(f[1], "x") {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end <= start || end-start > 1<<20 {
			return -1
		}
		mem, err := os.Open("/proc/self/mem")
		if err != nil {
			return -1
		}
		defer mem.Close()
		b := make([]byte, end-start)
		if _, err := mem.ReadAt(b, int64(start)); err != nil {
			return -1
		}
		return bytes.Index(b, syscallInsn[:])
	}
	return -1
}

// tracee is a process stopped under the init's ptrace, into which the
// init makes system calls. Only the thread that traces it may use it.
type tracee struct {
	pid    int
	regs   unix.PtraceRegs // at the stop; restored by restore
	site   uintptr         // the `syscall` instruction used
	inVDSO bool            // site is the vDSO's: nothing to put back
	saved  [8]byte         // else the original bytes at site
}

// borrow prepares a tracee stopped right after execve for injected
// system calls. vdsoOff is vdsoSyscall's answer in the init; words
// bounds the words read above the stack pointer to find the vDSO (argc,
// argv, envp, the auxiliary vector).
func borrow(pid, vdsoOff, words int) (*tracee, error) {
	t := &tracee{pid: pid}
	if err := unix.PtraceGetRegs(pid, &t.regs); err != nil {
		return nil, fmt.Errorf("getregs: %w", err)
	}
	if vdsoOff >= 0 {
		if base := t.vdsoBase(words); base != 0 {
			var insn [2]byte
			site := base + uintptr(vdsoOff)
			if _, err := unix.PtracePeekText(pid, site, insn[:]); err == nil && insn == syscallInsn {
				t.site, t.inVDSO = site, true
				return t, nil
			}
		}
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

// atSysinfoEHDR is the auxiliary vector's entry for the vDSO's base.
const atSysinfoEHDR = 33

// vdsoBase reads the tracee's vDSO base from its auxiliary vector, above
// argc, argv and envp at the stack pointer of the exec stop, or 0.
func (t *tracee) vdsoBase(words int) uintptr {
	buf := make([]byte, 8*words)
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	n, err := unix.ProcessVMReadv(t.pid, local, []unix.RemoteIovec{{Base: uintptr(t.regs.Rsp), Len: len(buf)}}, 0)
	if err != nil {
		return 0
	}
	w := func(i int) uint64 { return binary.NativeEndian.Uint64(buf[8*i:]) }
	nw := n / 8
	if nw == 0 || w(0) >= uint64(nw) {
		return 0
	}
	i := int(w(0)) + 2 // argc, argv, NULL
	for i < nw && w(i) != 0 {
		i++ // envp
	}
	for i++; i+1 < nw && w(i) != 0; i += 2 {
		if w(i) == atSysinfoEHDR {
			return uintptr(w(i + 1))
		}
	}
	return 0
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

// restore puts back the borrowed bytes, if any, and the registers of the
// stop.
func (t *tracee) restore() error {
	if !t.inVDSO {
		if _, err := unix.PtracePokeText(t.pid, t.site, t.saved[:]); err != nil {
			return fmt.Errorf("poke back: %w", err)
		}
	}
	r := t.regs
	r.Orig_rax = ^uint64(0) // resume as from a signal stop, with no restart
	if err := unix.PtraceSetRegs(t.pid, &r); err != nil {
		return fmt.Errorf("setregs: %w", err)
	}
	return nil
}
