package sandbox

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln/internal/testenv"
)

// What a job can see of the sandbox and of earlier jobs in the same pooled
// sandbox: the syscall filter, keyrings, PID 1's counters, the OOM killer's
// pick and the memory figure. Each test drives C programs through a real
// strict runner, the way a submitted program would.

// sysProbe tries every call the filter denies, with arguments the kernel
// would answer with something other than EPERM (or success) if the call
// reached it, and prints "name errno" (0: it succeeded).
const sysProbe = `#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/keyctl.h>

static void try(const char *name, long r) { printf("%s %d\n", name, r < 0 ? errno : 0); }
#define T(nr, ...) try(#nr, syscall(SYS_##nr, __VA_ARGS__))

int main(void) {
	T(add_key, "user", "kiln", "x", 1, KEY_SPEC_PROCESS_KEYRING);
	T(request_key, "user", "kiln", NULL, 0);
	T(keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0);
	T(bpf, 0, NULL, 0);
	T(perf_event_open, NULL, 0, -1, -1, 0);
	T(userfaultfd, 0);
	T(io_uring_setup, 1, NULL);
	T(io_uring_enter, -1, 0, 0, 0, NULL, 0);
	T(io_uring_register, -1, 0, NULL, 0);
	T(mount, "none", "/tmp", "tmpfs", 0, NULL);
	T(umount2, "/tmp", 0);
	T(pivot_root, "/tmp", "/tmp");
	T(unshare, 0);
	T(setns, -1, 0);
	T(fsopen, "tmpfs", 0);
	T(fsconfig, -1, 0, NULL, NULL, 0);
	T(fsmount, -1, 0, 0);
	T(fspick, -1, "", 0);
	T(move_mount, -1, "", -1, "", 0);
	T(open_tree, -1, "/tmp", 0);
	T(mount_setattr, -1, "", 0, NULL, 0);
	T(ptrace, PTRACE_TRACEME, 0, 0, 0);
	T(kexec_load, 0, 0, NULL, 0);
	T(kexec_file_load, -1, -1, 0, NULL, 0);
	T(init_module, NULL, 0, "");
	T(finit_module, -1, "", 0);
	T(delete_module, "kiln", 0);
	T(swapon, "/w/none", 0);
	T(swapoff, "/w/none");
	T(reboot, 0, 0, 0, NULL);
	T(acct, NULL);
	T(quotactl, 0, NULL, 0, NULL);
	T(quotactl_fd, -1, 0, 0, NULL);
	T(lookup_dcookie, 0, NULL, 0);
	T(uselib, NULL);
	T(syslog, 10, NULL, 0);
	T(open_by_handle_at, -1, NULL, 0);
	T(iopl, 0);
	T(ioperm, 0, 0, 0);
	try("clone_newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
	try("clone_newpid", syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0));
	try("clone_newnet", syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
	try("clone3", syscall(SYS_clone3, NULL, 0));
	try("socket_vsock", socket(40, SOCK_STREAM, 0));
	try("socket_netlink", socket(AF_NETLINK, SOCK_RAW, 0));
	try("socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
	try("socketpair_vsock", socketpair(40, SOCK_STREAM, 0, (int[2]){0}));
	try("personality_set", personality(ADDR_NO_RANDOMIZE));
	/* What must keep working. */
	try("ok_personality_query", personality(0xffffffff));
	try("ok_socket_unix", socket(AF_UNIX, SOCK_STREAM, 0));
	try("ok_socket_inet", socket(AF_INET, SOCK_DGRAM, 0));
	try("ok_socket_inet6", socket(AF_INET6, SOCK_DGRAM, 0));
	try("ok_socketpair_unix", socketpair(AF_UNIX, SOCK_STREAM, 0, (int[2]){0}));
	pid_t p = fork();
	if (p == 0) _exit(0);
	try("ok_fork", p < 0 ? -1 : waitpid(p, NULL, 0));
	cpu_set_t cpus;
	sched_getaffinity(0, sizeof cpus, &cpus);
	printf("cpus %d\n", CPU_COUNT(&cpus));
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "Seccomp", 7) == 0) fputs(line, stdout);
	return 0;
}
`

func TestSyscallFilterInSandbox(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	compileC(t, r, dir, sysProbe)
	res := run(t, r, dir, defaultLimits(), "", "./main")
	if res.ExitCode != 0 {
		t.Fatalf("%+v\n%s", res.Outcome, res.stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			got[strings.TrimSuffix(f[0], ":")] = f[1]
		}
	}
	for k, v := range got {
		want := "1" // EPERM
		switch {
		case k == "clone3":
			want = "38" // ENOSYS: libc falls back to clone
		case strings.HasPrefix(k, "ok_"):
			want = "0"
		case k == "Seccomp":
			want = "2" // filter mode
		case k == "Seccomp_filters":
			want = "2" // the sandbox's and the job's
		case k == "cpus": // the start-up pinning is undone
			want = strconv.Itoa(runtime.NumCPU())
		}
		if v != want {
			t.Errorf("%s: got %s, want %s", k, v, want)
		}
	}
	for _, name := range deniedSyscalls {
		if _, ok := got[name]; !ok && name != "open_tree_attr" {
			t.Errorf("%s not probed", name)
		}
	}
	if len(got) < 50 {
		t.Fatalf("probe printed too little:\n%s\n%s", res.stdout, res.stderr)
	}
}

// leakProbe, run twice in one pooled sandbox: "leave" leaves what it can
// (keys, CPU time and page faults for PID 1 to count, an abstract socket
// held by a child, a POSIX message queue); "look" reports what it finds.
const leakProbe = `#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/keyctl.h>

static struct sockaddr_un addr = {AF_UNIX, "\0kiln-leak"};

static void leave(void) {
	long k = syscall(SYS_add_key, "user", "kiln-leak", "s3cret", 6, KEY_SPEC_USER_KEYRING);
	printf("add_key %ld %d\n", k, k < 0 ? errno : 0);
	long p = syscall(SYS_keyctl, KEYCTL_GET_PERSISTENT, -1, KEY_SPEC_USER_KEYRING);
	if (p >= 0) k = syscall(SYS_add_key, "user", "kiln-leak", "s3cret", 6, p);
	printf("persistent %ld %d\n", p, p < 0 ? errno : 0);
	char *m = malloc(64 << 20);
	memset(m, 1, 64 << 20);
	struct timespec t0, t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	do clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 300);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	printf("bind %d\n", bind(s, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(s, 1) == 0);
	mqd_t q = mq_open("/kiln-leak", O_CREAT | O_RDWR, 0666, NULL);
	printf("mq %d\n", q != (mqd_t)-1);
	if (fork() == 0) { pause(); }
}

static void look(void) {
	long k = syscall(SYS_keyctl, KEYCTL_SEARCH, KEY_SPEC_USER_KEYRING, "user", "kiln-leak", 0);
	char buf[64] = "";
	if (k >= 0) syscall(SYS_keyctl, KEYCTL_READ, k, buf, sizeof buf - 1);
	printf("key %s %d\n", k >= 0 ? buf : "-", k < 0 ? errno : 0);
	long p = syscall(SYS_keyctl, KEYCTL_GET_PERSISTENT, -1, 0);
	if (p >= 0) k = syscall(SYS_keyctl, KEYCTL_SEARCH, p, "user", "kiln-leak", 0);
	printf("persistent-key %s\n", p >= 0 && k >= 0 ? "FOUND" : "-");
	FILE *f = fopen("/proc/1/stat", "r");
	char stat[512] = "";
	if (f) fgets(stat, sizeof stat, f);
	printf("init-stat %d %s", f ? 0 : errno, f ? stat : "\n");
	int pids = 0, one = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (atoi(e->d_name) > 0) { pids++; one |= atoi(e->d_name) == 1; }
	printf("pids %d pid1 %d\n", pids, one);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	printf("connect %d\n", connect(s, (struct sockaddr *)&addr, sizeof addr) == 0 ? 0 : errno);
	mqd_t q = mq_open("/kiln-leak", O_RDONLY);
	printf("mq %d\n", q == (mqd_t)-1 ? errno : 0);
}

int main(int argc, char **argv) {
	if (strcmp(argv[1], "leave") == 0) leave(); else look();
	return 0;
}
`

// TestPooledJobSeesNothingOfTheLast runs two jobs in the same pooled
// sandbox: the second must find none of the first's keys (finding 1), no
// PID 1 counters (finding 4), no socket and no message queue.
func TestPooledJobSeesNothingOfTheLast(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	compileC(t, r, dir, leakProbe+"\n")
	// compileC left its sandbox idle: the same one runs both jobs.
	first := run(t, r, dir, defaultLimits(), "", "./main", "leave")
	if first.ExitCode != 0 {
		t.Fatalf("leave: %+v %s %s", first.Outcome, first.stdout, first.stderr)
	}
	if !strings.Contains(first.stdout, "add_key -1 1\n") || !strings.Contains(first.stdout, "persistent -1 1\n") {
		t.Errorf("the job could use keyrings:\n%s", first.stdout)
	}
	second := run(t, r, dir, defaultLimits(), "", "./main", "look")
	out := second.stdout
	t.Logf("first:\n%ssecond:\n%s", first.stdout, out)
	for _, want := range []string{"key - 1\n", "persistent-key -\n", "init-stat 2 \n", "pid1 0\n", "connect 111\n", "mq 2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in the second job's view:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s3cret") || strings.Contains(out, "FOUND") {
		t.Errorf("the second job read the first job's key")
	}
	if r.idleCount() != 1 {
		t.Fatalf("the jobs did not share one pooled sandbox (%d idle)", r.idleCount())
	}
}

// idleCount is the number of pooled sandboxes.
func (s *Strict) idleCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle)
}

// TestFillWorkDirPastMemoryLimit: tmpfs pages are charged to the job's
// memory cgroup but belong to no process; the init, in no group of the
// job, must not be the OOM killer's pick (finding 3).
func TestFillWorkDirPastMemoryLimit(t *testing.T) {
	r := newStrictT(t)
	if r.cg.memory == "" {
		testenv.Need(t, "a cgroup memory controller", errors.New("none found for the strict runner"))
	}
	dir := t.TempDir()
	compileC(t, r, dir, `#include <stdio.h>
#include <string.h>
int main(void){ static char b[1<<20]; memset(b, 7, sizeof b); FILE *f = fopen("/w/fill", "w");
	for (int i = 0;; i++) { if (fwrite(b, 1, sizeof b, f) != sizeof b || fflush(f)) { printf("stopped at %d MiB\n", i); return 3; } } }
`)
	lim := defaultLimits()
	lim.MemoryBytes, lim.FileBytes = 48<<20, 200<<20
	for i := 0; i < 3; i++ {
		var so, se bytes.Buffer
		spec := Spec{Argv: []string{"./main"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, Stdout: &so, Stderr: &se, Limits: lim}
		out, err := r.Run(context.Background(), spec)
		if err != nil {
			t.Fatalf("run %d: the sandbox failed (%v): the job's memory cost the init its life", i, err)
		}
		if !out.MemoryExceeded || out.ExitCode == 0 {
			t.Fatalf("run %d: want memory_limit, got %+v %q", i, out, so.String())
		}
		if out.PeakMemoryKiB < 40<<10 {
			t.Errorf("run %d: peak %d KiB does not show the tmpfs pages", i, out.PeakMemoryKiB)
		}
		os.Remove(filepath.Join(dir, "fill"))
	}
	normalJob(t, r)
}

// example is one of examples/ with its compile and run commands.
type example struct {
	file    string
	compile []string
	run     []string
	want    string
}

func examples(t *testing.T) []example {
	ex := []example{
		{"hello.c", []string{"gcc", "-O2", "-o", "main", "hello.c"}, []string{"./main"}, "hello"},
		{"hello.cpp", []string{"g++", "-O2", "-o", "main", "hello.cpp"}, []string{"./main"}, "hello"},
		{"hello.py", nil, []string{"/usr/bin/python3", "-B", "hello.py"}, "hello"},
	}
	if java, err := filepath.EvalSymlinks("/usr/bin/java"); err == nil {
		ex = append(ex, example{"Hello.java", []string{"javac", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1", "-J-Xmx512m", "Hello.java"},
			[]string{java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Xss64m", "-Xmx192m", "-cp", ".", "Hello"}, "hello from java"})
	} else if os.Getenv("CI") == "true" {
		t.Fatalf("no JDK: %v", err)
	} else {
		t.Logf("SKIP LOUDLY: no JDK, Hello.java not run (%v)", err)
	}
	return ex
}

// TestExamplesUnderFilter compiles and runs the four examples under the
// syscall filter (JIT included) and checks that the memory each reports is
// its own: within 1 MiB or 10 % of its bare peak RSS from
// /usr/bin/time -f %M, median of three (finding 6: every job used to
// report the init's 12-18 MiB).
func TestExamplesUnderFilter(t *testing.T) {
	r := newStrictT(t)
	timeBin := "/usr/bin/time"
	testenv.File(t, timeBin) // to measure bare peaks
	for _, ex := range examples(t) {
		dir := t.TempDir()
		src, err := os.ReadFile(filepath.Join("..", "..", "examples", ex.file))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, ex.file, string(src))
		if ex.compile != nil {
			if res := run(t, r, dir, compileLimits(), "", ex.compile...); res.ExitCode != 0 {
				t.Fatalf("%s: compile: %+v\n%s", ex.file, res.Outcome, res.stderr)
			}
		}
		var bare, boxed []int64
		for i := 0; i < 3; i++ {
			res := run(t, r, dir, defaultLimits(), "", ex.run...)
			if res.ExitCode != 0 || !strings.HasPrefix(res.stdout, ex.want) {
				t.Fatalf("%s: %+v %q %s", ex.file, res.Outcome, res.stdout, res.stderr)
			}
			boxed = append(boxed, res.PeakMemoryKiB)
			bare = append(bare, barePeak(t, timeBin, dir, ex.run))
		}
		b, s := median(bare), median(boxed)
		t.Logf("%s: bare %d KiB, sandbox %d KiB (runs %v / %v)", ex.file, b, s, bare, boxed)
		if d := max(s-b, b-s); d > max(1024, b/10) {
			t.Errorf("%s: reported %d KiB, bare peak %d KiB", ex.file, s, b)
		}
	}
}

// barePeak runs argv in dir on the host under /usr/bin/time -f %M.
func barePeak(t *testing.T, timeBin, dir string, argv []string) int64 {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "peak")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(timeBin, append([]string{"-f", "%M", "-o", f.Name()}, argv...)...)
	cmd.Dir, cmd.Env = dir, []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "LANG=C.UTF-8"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { <-ctx.Done(); cmd.Process.Kill() }()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bare %v: %v %s", argv, err, out)
	}
	b, _ := os.ReadFile(f.Name())
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("bare %v: %q", argv, b)
	}
	return n
}

func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestPeakMemoryIsPerJob: a job after a big one reports its own peak.
func TestPeakMemoryIsPerJob(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	compileC(t, r, dir, `#include <stdlib.h>
#include <string.h>
#include <stdio.h>
int main(int argc, char **argv){ if (argc > 1) { char *p = malloc(100 << 20); memset(p, argc, 100 << 20); printf("%d\n", p[argc << 20]); } puts("ok"); return 0; }
`)
	big := run(t, r, dir, defaultLimits(), "", "./main", "big")
	small := run(t, r, dir, defaultLimits(), "", "./main")
	if big.PeakMemoryKiB < 100<<10 || small.PeakMemoryKiB > 4<<10 {
		t.Fatalf("big job %d KiB, next small job %d KiB", big.PeakMemoryKiB, small.PeakMemoryKiB)
	}
	t.Logf("big %d KiB, small %d KiB", big.PeakMemoryKiB, small.PeakMemoryKiB)
}
