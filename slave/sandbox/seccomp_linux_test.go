package sandbox

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// filterVMs assembles every filter for the x/net/bpf VM.
func filterVMs(t *testing.T) []*bpf.VM {
	t.Helper()
	sandbox, job, err := filterPolicies()
	if err != nil {
		t.Fatal(err)
	}
	var vms []*bpf.VM
	for _, p := range []seccomp.Policy{sandbox, job} {
		insts, err := p.Assemble()
		if err != nil {
			t.Fatal(err)
		}
		vm, err := bpf.NewVM(insts)
		if err != nil {
			t.Fatal(err)
		}
		vms = append(vms, vm)
	}
	return vms
}

// filterVerdict runs every filter on one system call the way the kernel
// does (all filters, the strongest action wins, the newest filter among
// equals) and returns the combined seccomp return value. The BPF VM of
// x/net/bpf loads words big-endian, so the seccomp_data is laid out
// big-endian word by word.
func filterVerdict(t *testing.T, vms []*bpf.VM, auditArch uint32, nr int, args ...uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], uint32(nr))
	binary.BigEndian.PutUint32(data[4:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))     // low word first: little-endian layout
		binary.BigEndian.PutUint32(data[20+8*i:], uint32(a>>32)) // high word
	}
	best := uint32(unix.SECCOMP_RET_ALLOW)
	for i := len(vms) - 1; i >= 0; i-- { // newest first
		r, err := vms[i].Run(data)
		if err != nil {
			t.Fatal(err)
		}
		ret := uint32(r)
		if int32(ret&unix.SECCOMP_RET_ACTION_FULL) < int32(best&unix.SECCOMP_RET_ACTION_FULL) {
			best = ret
		}
	}
	return best
}

func TestFilterDecisions(t *testing.T) {
	native := uint32(arch.X86_64.ID)
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	enosys := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	type call struct {
		name string
		arch uint32
		nr   int
		args []uint64
		want uint32
	}
	cases := []call{
		{"read", native, unix.SYS_READ, nil, allow},
		{"glibc fork", native, unix.SYS_CLONE, []uint64{unix.CLONE_CHILD_SETTID | unix.CLONE_CHILD_CLEARTID | uint64(unix.SIGCHLD)}, allow},
		{"vfork-style clone", native, unix.SYS_CLONE, []uint64{unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)}, allow},
		{"pthread clone", native, unix.SYS_CLONE, []uint64{0x3d0f00}, allow},
		{"clone, flags = socketpair's number", native, unix.SYS_CLONE, []uint64{unix.SYS_SOCKETPAIR}, allow},
		{"clone, flags = personality's number", native, unix.SYS_CLONE, []uint64{unix.SYS_PERSONALITY}, allow},
		{"clone, flags = socket's number", native, unix.SYS_CLONE, []uint64{unix.SYS_SOCKET}, allow},
		{"socket, family = personality's number", native, unix.SYS_SOCKET, []uint64{unix.SYS_PERSONALITY}, eperm},
		{"personality, persona = clone's number", native, unix.SYS_PERSONALITY, []uint64{unix.SYS_CLONE}, eperm},
		{"clone3", native, unix.SYS_CLONE3, nil, enosys},
		{"socket AF_UNIX", native, unix.SYS_SOCKET, []uint64{unix.AF_UNIX}, allow},
		{"socket AF_INET", native, unix.SYS_SOCKET, []uint64{unix.AF_INET}, allow},
		{"socket AF_INET6", native, unix.SYS_SOCKET, []uint64{unix.AF_INET6}, allow},
		{"socket AF_VSOCK", native, unix.SYS_SOCKET, []uint64{unix.AF_VSOCK}, eperm},
		{"socket AF_NETLINK", native, unix.SYS_SOCKET, []uint64{unix.AF_NETLINK}, eperm},
		{"socket AF_PACKET", native, unix.SYS_SOCKET, []uint64{unix.AF_PACKET}, eperm},
		{"socket AF_UNIX with high bits", native, unix.SYS_SOCKET, []uint64{1<<32 | unix.AF_UNIX}, eperm},
		{"socketpair AF_UNIX", native, unix.SYS_SOCKETPAIR, []uint64{unix.AF_UNIX}, allow},
		{"socketpair AF_VSOCK", native, unix.SYS_SOCKETPAIR, []uint64{unix.AF_VSOCK}, eperm},
		{"personality query", native, unix.SYS_PERSONALITY, []uint64{0xffffffff}, allow},
		{"personality default", native, unix.SYS_PERSONALITY, []uint64{0}, allow},
		{"personality READ_IMPLIES_EXEC", native, unix.SYS_PERSONALITY, []uint64{0x0400000}, eperm},
		{"personality ADDR_NO_RANDOMIZE", native, unix.SYS_PERSONALITY, []uint64{0x0040000}, eperm},
		{"unknown number", native, 999, nil, eperm},
		{"i386 keyctl", uint32(arch.I386.ID), 288, nil, eperm},
		{"i386 getpid", uint32(arch.I386.ID), 20, nil, eperm},
		{"x32 read", native, unix.SYS_READ | 0x40000000, nil, enosys},
	}
	for _, f := range []uint64{unix.CLONE_NEWNS, unix.CLONE_NEWCGROUP, unix.CLONE_NEWUTS, unix.CLONE_NEWIPC, unix.CLONE_NEWUSER, unix.CLONE_NEWPID, unix.CLONE_NEWNET} {
		cases = append(cases, call{fmt.Sprintf("clone %#x", f), native, unix.SYS_CLONE, []uint64{f | uint64(unix.SIGCHLD)}, eperm})
	}
	for _, name := range deniedSyscalls {
		cases = append(cases, call{name, native, arch.X86_64.SyscallNames[name], nil, eperm})
	}
	vms := filterVMs(t)
	for _, c := range cases {
		if got := filterVerdict(t, vms, c.arch, c.nr, c.args...); got != c.want {
			t.Errorf("%s: got %#x, want %#x", c.name, got, c.want)
		}
	}
}

// TestFilterArgumentChecks tries every argument-checked call with every
// small first argument, every system call number among them, and a few
// large ones: the argument left in the accumulator by a failed check must
// never be mistaken for a later rule's number.
func TestFilterArgumentChecks(t *testing.T) {
	vms := filterVMs(t)
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	in := func(v uint64, set ...uint64) bool { return slices.Contains(set, v) }
	rules := map[int]func(a uint64) bool{ // allowed?
		unix.SYS_SOCKET:      func(a uint64) bool { return in(a, allowedFamilies...) },
		unix.SYS_SOCKETPAIR:  func(a uint64) bool { return in(a, allowedFamilies...) },
		unix.SYS_PERSONALITY: func(a uint64) bool { return in(a, personalityOK...) },
		unix.SYS_CLONE:       func(a uint64) bool { return a&nsCloneFlags == 0 },
		unix.SYS_READ:        func(uint64) bool { return true },
		unix.SYS_GETPID:      func(uint64) bool { return true },
		unix.SYS_KEYCTL:      func(uint64) bool { return false },
	}
	args := []uint64{0xffffffff, 1 << 32, 1<<32 | 1, ^uint64(0), nsCloneFlags, 0x01200011, 0x3d0f00}
	for a := uint64(0); a < 1024; a++ {
		args = append(args, a)
	}
	for nr := range rules {
		for _, lo := range []uint64{0, 1, 2, 10, uint64(nr), 0xffffffff} {
			args = append(args, uint64(nr)<<32|lo)
		}
	}
	for nr, ok := range rules {
		for _, a := range args {
			want := eperm
			if ok(a) {
				want = allow
			}
			if got := filterVerdict(t, vms, uint32(arch.X86_64.ID), nr, a); got != want {
				t.Fatalf("syscall %d arg %#x: got %#x, want %#x", nr, a, got, want)
			}
		}
	}
}

func TestFilterPrograms(t *testing.T) {
	p, err := jobFilterProgram()
	if err != nil {
		t.Fatal(err)
	}
	if len(p)%8 != 0 || len(p) == 0 || len(p)/8 > 64 {
		t.Fatalf("job filter: %d bytes", len(p))
	}
	sandbox, _, _ := filterPolicies()
	insts, err := sandbox.Assemble()
	if err != nil || len(insts) > unix.BPF_MAXINSNS {
		t.Fatalf("sandbox filter: %d instructions, %v", len(insts), err)
	}
	t.Logf("sandbox filter %d instructions, job filter %d", len(insts), len(p)/8)
}
