package sandbox

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sort"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The syscall filter every job process runs under. It is assembled by
// go-seccomp-bpf from the lists below (no hand-written BPF), once per
// runner, and installed by the init into the job's first process before
// that process runs a single instruction of its own (see inject_linux.go).
// Children inherit it; no_new_privs is already set.
//
// The filter is an allow list of every system call of the native ABI that
// the library's table knows (Linux 6.15), minus the denied ones, so that:
//   - denied calls fail with EPERM, a clean error programs handle;
//   - clone3 fails with ENOSYS, so that libc falls back to clone, whose flags
//     a filter can read (clone3 passes them in memory);
//   - calls of another ABI (i386 through int 0x80) and calls newer than the
//     table fail with EPERM, x32 calls with ENOSYS: a deny list with "allow"
//     as the default would let `int 0x80` reach keyctl under its i386
//     number.

// deniedSyscalls return EPERM whatever their arguments.
var deniedSyscalls = []string{
	// Kernel keyrings belong to the user namespace, which the warm pool
	// keeps from one job to the next.
	"add_key", "request_key", "keyctl",
	// Large kernel attack surfaces no compiler or judged program needs.
	"bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	// Mounts and namespaces (also refused for want of capabilities).
	"mount", "umount2", "pivot_root", "unshare", "setns",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
	"open_tree_attr", "mount_setattr",
	// Debugging other processes.
	"ptrace",
	// The machine itself.
	"kexec_load", "kexec_file_load", "init_module", "finit_module",
	"delete_module", "swapon", "swapoff", "reboot", "acct", "quotactl",
	"quotactl_fd", "syslog", "open_by_handle_at", "lookup_dcookie",
	"iopl", "ioperm", "uselib",
}

// nsCloneFlags are the namespace flags of clone, refused with EPERM.
// CLONE_NEWTIME (0x80) is left out: in clone's first argument those bits
// are the exit signal; clone3, the only way to pass it, is refused.
const nsCloneFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// allowedFamilies are the socket families a job may create.
var allowedFamilies = []uint64{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6}

// personalityOK are the personality(2) arguments allowed: the default
// (PER_LINUX) and the query 0xffffffff.
var personalityOK = []uint64{0, 0xffffffff}

// filterPolicies returns the filters for the native architecture, to be
// installed in this order. The kernel runs every installed filter and
// keeps the strongest answer (for two errno answers, the newest filter's).
//
// The first is the allow list; the second holds the argument checks and
// allows everything else. They cannot share a filter: go-seccomp-bpf
// v1.6.0 leaves the argument in the accumulator when a condition fails and
// goes on comparing it with system call numbers (with one filter, glibc's
// fork, clone(0x01200011), met no rule and got the default EPERM). Within
// the second filter the order makes that harmless: a failed socket or
// socketpair check leaves 1, 2 or 10, a failed personality check 0 or
// 0xffffffff, none of them a later rule's number (socketpair 53,
// personality 135, clone 56), and clone, whose flags could be anything,
// comes last. TestFilterDecisions pins the combined answers.
func filterPolicies() ([]seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	eperm := seccomp.ActionErrno | seccomp.Action(unix.EPERM)
	enosys := seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)
	skip := map[string]bool{"clone3": true}
	for _, n := range deniedSyscalls {
		skip[n] = true
	}
	var allowed []string
	for name := range info.SyscallNames {
		if !skip[name] {
			allowed = append(allowed, name)
		}
	}
	sort.Slice(allowed, func(i, j int) bool { return info.SyscallNames[allowed[i]] < info.SyscallNames[allowed[j]] })
	notIn := func(name string, values []uint64) seccomp.NameWithConditions {
		nc := seccomp.NameWithConditions{Name: name}
		for _, v := range values {
			nc.Conditions = append(nc.Conditions, seccomp.Condition{Argument: 0, Operation: seccomp.NotEqual, Value: v})
		}
		return nc
	}
	return []seccomp.Policy{{
		DefaultAction: seccomp.ActionErrno, // EPERM (the library allows no other errno here)
		Syscalls: []seccomp.SyscallGroup{
			{Action: eperm, Names: deniedSyscalls},
			{Action: enosys, Names: []string{"clone3"}},
			{Action: seccomp.ActionAllow, Names: allowed},
		},
	}, {
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{{Action: eperm, NamesWithCondtions: []seccomp.NameWithConditions{
			notIn("socket", allowedFamilies),
			notIn("socketpair", allowedFamilies),
			notIn("personality", personalityOK),
			{Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: nsCloneFlags}}},
		}}},
	}}, nil
}

// filterPrograms assembles the filters, each into the bytes of a struct
// sock_filter array in native byte order, ready to be copied into a process
// and passed to seccomp(2).
func filterPrograms() ([][]byte, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("%w: the syscall filter is only installed on amd64 (this is %s)", ErrMissing, runtime.GOARCH)
	}
	policies, err := filterPolicies()
	if err != nil {
		return nil, fmt.Errorf("%w: syscall filter: %v", ErrMissing, err)
	}
	var progs [][]byte
	for _, p := range policies {
		insts, err := p.Assemble()
		if err != nil {
			return nil, fmt.Errorf("sandbox: syscall filter: %w", err)
		}
		raw, err := bpf.Assemble(insts)
		if err != nil {
			return nil, fmt.Errorf("sandbox: syscall filter: %w", err)
		}
		if len(raw) > unix.BPF_MAXINSNS {
			return nil, fmt.Errorf("sandbox: syscall filter has %d instructions, more than %d", len(raw), unix.BPF_MAXINSNS)
		}
		b := make([]byte, 0, 8*len(raw))
		for _, in := range raw {
			b = binary.NativeEndian.AppendUint16(b, in.Op)
			b = append(b, in.Jt, in.Jf)
			b = binary.NativeEndian.AppendUint32(b, in.K)
		}
		progs = append(progs, b)
	}
	return progs, nil
}

// filterSummary describes the filter for the start-up line.
func filterSummary() string {
	return fmt.Sprintf("seccomp filter (allow list; %d calls, namespace flags of clone, socket families other than unix/inet/inet6, personality changes and other ABIs get EPERM, clone3 ENOSYS)",
		len(deniedSyscalls))
}
