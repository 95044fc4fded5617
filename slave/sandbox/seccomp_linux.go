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

// The syscall filters, assembled by go-seccomp-bpf from the lists below
// (no hand-written BPF). There are two, and a job runs under both:
//
//   - the sandbox filter, loaded by the init into all its own threads once,
//     when it starts (TSYNC), and inherited by every process it forks: an
//     allow list of every system call of the native ABI that the library's
//     table knows (Linux 6.15) minus sandboxDenied, with argument checks on
//     clone, socket, socketpair and personality. Calls of another ABI (i386
//     through int 0x80) and calls newer than the table fail with EPERM, x32
//     calls with ENOSYS: a deny list with "allow" as the default would let
//     `int 0x80` reach keyctl under its i386 number. The init itself needs
//     none of what it denies once its root is built.
//   - the job filter, loaded into each job's first process before its first
//     instruction (start_linux.go): it denies what the init needs and a job
//     must not have (mounts, unshare, ptrace) and answers clone3 with ENOSYS,
//     so that libc falls back to clone, whose flags a filter can read.
//
// The split keeps the per-job cost low: loading the allow list (~430
// instructions, JIT-compiled and cached per system call by the kernel) costs
// ~0.35 ms, loading the job filter a few microseconds.

// sandboxDenied return EPERM in the whole sandbox, init included.
var sandboxDenied = []string{
	// Kernel keyrings belong to the user namespace, which the warm pool
	// keeps from one job to the next.
	"add_key", "request_key", "keyctl",
	// Large kernel attack surfaces no compiler or judged program needs.
	"bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	// Namespaces and the root (the init pivots before loading the filter).
	"setns", "pivot_root",
	// The machine itself.
	"kexec_load", "kexec_file_load", "init_module", "finit_module",
	"delete_module", "swapon", "swapoff", "reboot", "acct", "quotactl",
	"quotactl_fd", "syslog", "open_by_handle_at", "lookup_dcookie",
	"iopl", "ioperm", "uselib",
}

// jobDenied return EPERM in jobs: the init attaches each job's mounts,
// gives it an IPC namespace and traces its start; a job may do none of it
// (it also lacks the capabilities).
var jobDenied = []string{
	"mount", "umount2", "unshare", "ptrace",
	"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
	"open_tree_attr", "mount_setattr",
}

// deniedSyscalls is every call a job gets EPERM for whatever its arguments.
var deniedSyscalls = append(append([]string{}, sandboxDenied...), jobDenied...)

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

// filterPolicies returns the sandbox filter and the job filter for the
// native architecture (the kernel runs every filter of a process and keeps
// the strongest answer).
//
// The sandbox filter's last group allows clone, socket, socketpair and
// personality when their first argument is acceptable. go-seccomp-bpf
// v1.6.0 leaves a checked argument in the accumulator when a check fails
// and compares it with the next rules' numbers, so the order of that group
// matters: a later rule can only be reached with a word of the same first
// argument that failed the earlier check, and then its own check fails too.
// clone comes first (an argument with namespace bits passes no later
// check), then socket and socketpair (same check), then personality (0 and
// 0xffffffff are no rule's number). With every other rule before them, a
// failed check ends at the default, EPERM. TestFilterArgumentChecks tries
// every first argument below 1024 and high words equal to each rule's
// number, and fails for any other order.
func filterPolicies() (sandbox, job seccomp.Policy, err error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return sandbox, job, err
	}
	eperm := seccomp.ActionErrno | seccomp.Action(unix.EPERM)
	enosys := seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)
	checked := []seccomp.NameWithConditions{
		{Name: "clone", Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsNotSet, Value: nsCloneFlags}}},
	}
	for _, r := range []struct {
		name   string
		values []uint64
	}{{"socket", allowedFamilies}, {"socketpair", allowedFamilies}, {"personality", personalityOK}} {
		for _, v := range r.values { // repeated names are OR'ed
			checked = append(checked, seccomp.NameWithConditions{Name: r.name,
				Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.Equal, Value: v}}})
		}
	}
	skip := map[string]bool{}
	for _, n := range sandboxDenied {
		skip[n] = true
	}
	for _, c := range checked {
		skip[c.Name] = true
	}
	var allowed []string
	for name := range info.SyscallNames {
		if !skip[name] {
			allowed = append(allowed, name)
		}
	}
	sort.Slice(allowed, func(i, j int) bool { return info.SyscallNames[allowed[i]] < info.SyscallNames[allowed[j]] })
	sandbox = seccomp.Policy{
		DefaultAction: seccomp.ActionErrno, // EPERM (the library allows no other errno here)
		Syscalls: []seccomp.SyscallGroup{
			{Action: eperm, Names: sandboxDenied},
			{Action: seccomp.ActionAllow, Names: allowed},
			{Action: seccomp.ActionAllow, NamesWithCondtions: checked},
		},
	}
	job = seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{
			{Action: eperm, Names: jobDenied},
			{Action: enosys, Names: []string{"clone3"}},
		},
	}
	return sandbox, job, nil
}

// loadSandboxFilter loads the sandbox filter into every thread of the
// calling process (the init), with no_new_privs.
func loadSandboxFilter() error {
	if err := filterArch(); err != nil {
		return err
	}
	p, _, err := filterPolicies()
	if err != nil {
		return err
	}
	return seccomp.LoadFilter(seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: p})
}

// filterArch reports whether the filters can be used here: the job filter
// is loaded by system call injection, written for amd64.
func filterArch() error {
	if runtime.GOARCH != "amd64" {
		return fmt.Errorf("%w: the syscall filter is only installed on amd64 (this is %s)", ErrMissing, runtime.GOARCH)
	}
	return nil
}

// jobFilterProgram assembles the job filter into the bytes of a struct
// sock_filter array in native byte order, ready to be copied into a process
// and passed to seccomp(2). It also assembles the sandbox filter, so that a
// runner that cannot build either refuses to start.
func jobFilterProgram() ([]byte, error) {
	if err := filterArch(); err != nil {
		return nil, err
	}
	sandbox, job, err := filterPolicies()
	if err != nil {
		return nil, fmt.Errorf("%w: syscall filter: %v", ErrMissing, err)
	}
	if _, err := sandbox.Assemble(); err != nil {
		return nil, fmt.Errorf("sandbox: syscall filter: %w", err)
	}
	insts, err := job.Assemble()
	if err != nil {
		return nil, fmt.Errorf("sandbox: job syscall filter: %w", err)
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return nil, fmt.Errorf("sandbox: job syscall filter: %w", err)
	}
	b := make([]byte, 0, 8*len(raw))
	for _, in := range raw {
		b = binary.NativeEndian.AppendUint16(b, in.Op)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b, nil
}

// filterSummary describes the filter for the start-up line.
func filterSummary() string {
	return fmt.Sprintf("seccomp filter (allow list; %d calls, namespace flags of clone, socket families other than unix/inet/inet6, personality changes and other ABIs get EPERM; clone3 ENOSYS)",
		len(deniedSyscalls))
}
