package slave

import (
	"context"
	"testing"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// pooledProbe runs src, a C program that reads a mode word on stdin, in
// one pooled slot of a strict sandbox (MaxIdle 1: every job lands in the
// slot the last one left) for one owner at a time, and returns its
// stdout; any status but ok fails the test.
func pooledProbe(t *testing.T, file, src string) func(owner, mode string, mem int64) string {
	t.Helper()
	needLang(t, wire.LangC)
	testenv.Root(t, "the strict sandbox (uid mappings, cgroups)")
	r, err := sandbox.NewStrict(sandbox.StrictConfig{MaxIdle: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e, _ := newExecutor(t, r)
	return func(owner, mode string, mem int64) string {
		t.Helper()
		c := &collector{}
		res := e.Execute(context.Background(), Job{ID: owner + "-" + mode, Language: wire.LangC, FileName: file, Source: []byte(src),
			Stdin: []byte(mode + "\n"), Owner: owner, Limits: wire.JobLimits{TimeMs: 5000, MemoryBytes: mem, OutputBytes: 1 << 20}}, c.emit)
		out := c.stream(wire.StreamStdout)
		if res.Status != wire.StatusOK {
			t.Fatalf("%s's %s job: %+v %q", owner, mode, res, out)
		}
		return out
	}
}

// expect wraps a pooledProbe run with the stdout each mode must print.
func expect(t *testing.T, run func(owner, mode string, mem int64) string, want map[string]string) func(owner, mode string, mem int64) {
	return func(owner, mode string, mem int64) {
		t.Helper()
		if out := run(owner, mode, mem); out != want[mode] {
			t.Fatalf("%s's %s job printed %q, want %q", owner, mode, out, want[mode])
		}
	}
}

// shmProbe, given "leave", fills a System V shared memory segment of 150
// MiB and exits without removing it; given "alloc", it fills 32 MiB of
// its own.
const shmProbe = `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
int main(void) {
	char mode[16] = {0};
	if (scanf("%15s", mode) != 1) return 2;
	if (mode[0] == 'l') {
		size_t n = 150u << 20;
		int id = shmget(IPC_PRIVATE, n, IPC_CREAT | 0600);
		char *p = id < 0 ? (void *)-1 : shmat(id, 0, 0);
		if (p == (void *)-1) { perror("shm"); return 3; }
		memset(p, 1, n);
		puts("left");
		return 0;
	}
	size_t n = 32u << 20;
	char *q = malloc(n);
	if (!q) return 4;
	memset(q, 2, n);
	puts("allocated");
	return 0;
}
`

// TestPooledSlotFreesSysVMemory: a job that leaves a System V segment
// behind leaves its pages charged to the slot's memory cgroup until its
// IPC namespace ends, which the init let happen after reporting the job
// done (and the kernel then frees in its own time). Another client's next
// job on the same pooled slot, under a lower memory limit, could not have
// it set (EBUSY from memory.limit_in_bytes) and failed internal_error as
// the slave's fault, getting the slave struck. The init now removes the
// job's System V objects before it reports the job done.
func TestPooledSlotFreesSysVMemory(t *testing.T) {
	run := expect(t, pooledProbe(t, "shm.c", shmProbe), map[string]string{"alloc": "allocated\n", "leave": "left\n"})
	run("bob", "alloc", 64<<20) // both builds cached: the jobs below only run
	run("alice", "alloc", 200<<20)
	for range 3 {
		run("alice", "leave", 200<<20)
		run("bob", "alloc", 64<<20)
	}
}

// sendfdsC is the head of the probes that park descriptors in a cycle
// of unix sockets: the headers they use and sendfds, which sends n (at
// most 4) descriptors over the socket s.
const sendfdsC = `#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
static int sendfds(int s, int *fds, int n) {
	char c = 'x';
	struct iovec iov = {&c, 1};
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	memset(cbuf, 0, sizeof cbuf);
	struct msghdr m = {0};
	m.msg_iov = &iov; m.msg_iovlen = 1;
	m.msg_control = cbuf; m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(h), fds, sizeof(int) * n);
	return sendmsg(s, &m, 0);
}
`

// memfdProbe, given "leave", fills three memfds of 50 MiB (under the
// run's 64 MiB file size limit), sends them with one end of a socket pair
// into a cycle of unix sockets and exits: nothing refers to the sockets
// but each other, and the pages stay until the kernel's garbage
// collector for such cycles frees them. Given "alloc", it fills 32 MiB.
const memfdProbe = sendfdsC + `int main(void) {
	char mode[16] = {0};
	if (scanf("%15s", mode) != 1) return 2;
	if (mode[0] == 'l') {
		size_t n = 50u << 20;
		int fds[3];
		for (int i = 0; i < 3; i++) {
			fds[i] = memfd_create("x", 0);
			if (fds[i] < 0 || ftruncate(fds[i], n) < 0) { perror("memfd"); return 3; }
			char *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
			if (p == MAP_FAILED) { perror("mmap"); return 4; }
			memset(p, 1, n);
			munmap(p, n);
		}
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0) { perror("socketpair"); return 5; }
		int a[4] = {sv[0], fds[0], fds[1], fds[2]}, b[1] = {sv[1]};
		if (sendfds(sv[0], a, 4) < 0 || sendfds(sv[1], b, 1) < 0) { perror("sendmsg"); return 6; }
		for (int i = 0; i < 3; i++) close(fds[i]);
		close(sv[0]); close(sv[1]);
		puts("left");
		return 0;
	}
	size_t n = 32u << 20;
	char *q = malloc(n);
	if (!q) return 7;
	memset(q, 2, n);
	puts("allocated");
	return 0;
}
`

// TestPooledSlotWaitsForLeftMemory: memory a job leaves for the kernel
// to free a little after it (here 150 MiB of memfds in a unix socket
// cycle) was still charged to the slot's cgroup when another client's
// next job came: a lower memory limit could not be set (EBUSY) and the job
// failed internal_error as the slave's fault. The limit waits for it.
func TestPooledSlotWaitsForLeftMemory(t *testing.T) {
	run := expect(t, pooledProbe(t, "cycle.c", memfdProbe), map[string]string{"alloc": "allocated\n", "leave": "left\n"})
	run("bob", "alloc", 64<<20)
	run("alice", "alloc", 200<<20)
	for range 3 {
		run("alice", "leave", 200<<20)
		run("bob", "alloc", 64<<20)
	}
}

// cycleProbe, given "keep", binds the abstract unix socket name
// "kiln-cycle", listens, and sends that socket with one end of a socket
// pair into a cycle of unix sockets before it exits; given "look", it
// binds the same name and prints the errno (0: the name was free).
const cycleProbe = sendfdsC + `int main(void) {
	char mode[16] = {0};
	if (scanf("%15s", mode) != 1) return 2;
	struct sockaddr_un addr = {AF_UNIX};
	memcpy(addr.sun_path, "\0kiln-cycle", 11);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (mode[0] == 'k') {
		if (bind(s, (struct sockaddr *)&addr, 2 + 11) < 0 || listen(s, 4) < 0) { perror("bind"); return 3; }
		int sv[2]; socketpair(AF_UNIX, SOCK_DGRAM, 0, sv);
		int a[2] = {sv[0], s}, b[1] = {sv[1]};
		if (sendfds(sv[0], a, 2) < 0 || sendfds(sv[1], b, 1) < 0) { perror("sendmsg"); return 4; }
		close(s); close(sv[0]); close(sv[1]);
		puts("left");
		return 0;
	}
	int r = bind(s, (struct sockaddr *)&addr, 2 + 11);
	printf("bind %d\n", r == 0 ? 0 : errno);
	return 0;
}
`

// TestPooledSlotLeavesNoSocketCycle: sockets a job left in a cycle of
// unix sockets outlive its processes until the kernel's collector frees
// them, after the next job may have started: another client's next job on
// the pooled slot found the job's abstract name still bound (EADDRINUSE),
// a channel between clients and a name it could not use. A run that
// leaves sockets in the sandbox's network namespace is not clean, and
// its sandbox is not used again.
func TestPooledSlotLeavesNoSocketCycle(t *testing.T) {
	probe := pooledProbe(t, "cycle.c", cycleProbe)
	run := func(owner, mode, want string) {
		t.Helper()
		if out := probe(owner, mode, 64<<20); out != want {
			t.Fatalf("%s's %s job printed %q, want %q", owner, mode, out, want)
		}
	}
	run("bob", "look", "bind 0\n")
	run("alice", "look", "bind 0\n")
	for range 3 {
		run("alice", "keep", "left\n")
		run("bob", "look", "bind 0\n")
	}
}

// mqProbe, given "keep", creates POSIX message queues until the job's
// user's quota (RLIMIT_MSGQUEUE) refuses one, and exits leaving them;
// given "look", it creates one and prints the errno (0: created).
const mqProbe = `#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
int main(void) {
	char mode[16] = {0};
	if (scanf("%15s", mode) != 1) return 2;
	struct mq_attr a = {0, 10, 8192, 0};
	if (mode[0] == 'k') {
		int n = 0;
		char name[32];
		for (; n < 100; n++) {
			snprintf(name, sizeof name, "/q%d", n);
			if (mq_open(name, O_CREAT | O_RDWR, 0600, &a) == (mqd_t)-1) break;
		}
		printf("made %d\n", n);
		return 0;
	}
	printf("open %d\n", mq_open("/mine", O_CREAT | O_RDWR, 0600, &a) == (mqd_t)-1 ? errno : 0);
	return 0;
}
`

// TestPooledSlotLeavesNoMessageQueues: a POSIX message queue's bytes count
// against its creator's user, the slot's, the same for every client's job
// on it, until the job's IPC namespace is freed in the kernel's own time.
// A job that spent the quota (RLIMIT_MSGQUEUE, 800 KiB) made mq_open fail
// with EMFILE in another client's next jobs on the slot, four in a row
// here: what one client's program saw depended on the last one's. Jobs get
// no quota at all (RLIMIT_MSGQUEUE 0), so the answer is the same whoever
// ran before.
func TestPooledSlotLeavesNoMessageQueues(t *testing.T) {
	probe := pooledProbe(t, "mq.c", mqProbe)
	run := func(owner, mode string) string { return probe(owner, mode, 64<<20) }
	alone := run("bob", "look")
	for range 3 {
		left := run("alice", "keep")
		if got := run("bob", "look"); got != alone {
			t.Fatalf("bob's mq_open: %q alone, %q after alice's job (%q)", alone, got, left)
		}
	}
}
