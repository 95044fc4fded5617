package slave

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// poolProbe is what a client writes to attack the next job on its slot:
// "leave" fills everything a pooled sandbox could carry over (SysV shared
// memory, semaphores and message queues under a known key and private
// ones, a POSIX message queue, a POSIX shm object, files in /w and /tmp,
// its own program in /w replaced and held open for writing by a daemon,
// which also holds an abstract socket (the next job's exec of ./main
// must not fail with ETXTBSY),
// TCP and UDP sockets bound in the sandbox's network namespace);
// "look" reports what of it the next job finds; "check" prints the
// program's own greeting.
const poolProbe = `#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <unistd.h>

#define KEY 0x6b326e72
static struct sockaddr_un addr = {AF_UNIX, "\0kiln-rt2-pool"};
struct m { long t; char s[32]; };

static int err(int r) { return r < 0 ? errno : 0; }

static void leave(void) {
	int shm = shmget(KEY, 4096, IPC_CREAT | 0666);
	char *p = shm >= 0 ? shmat(shm, 0, 0) : (void *)-1;
	if (p != (void *)-1) strcpy(p, "alice-secret");
	int priv = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0666);
	int sem = semget(KEY, 1, IPC_CREAT | 0666);
	int q = msgget(KEY, IPC_CREAT | 0666);
	struct m msg = {1, "alice-secret"};
	int sent = q >= 0 ? msgsnd(q, &msg, sizeof msg.s, IPC_NOWAIT) : -1;
	struct mq_attr a = {0, 4, 32, 0};
	mqd_t mq = mq_open("/kiln-rt2", O_CREAT | O_WRONLY, 0666, &a);
	int mqs = mq == (mqd_t)-1 ? -1 : mq_send(mq, "alice-secret", 13, 0);
	int psh = shm_open("/kiln-rt2", O_CREAT | O_RDWR, 0666);
	int wf = open("/w/alice-secret", O_CREAT | O_WRONLY, 0666);
	int tf = open("/tmp/alice-secret", O_CREAT | O_WRONLY, 0666);
	unlink("/w/main");
	int mf = open("/w/main", O_CREAT | O_WRONLY | O_TRUNC, 0755);
	if (mf >= 0) write(mf, "#!/bin/sh\necho pwned\n", 21); /* left open for writing in the daemon below */
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	int bound = bind(s, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(s, 4) == 0 ? 0 : errno;
	struct sockaddr_in in = {AF_INET, htons(4242)};
	in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int tcp = socket(AF_INET, SOCK_STREAM, 0), udp = socket(AF_INET, SOCK_DGRAM, 0);
	int inet = bind(tcp, (struct sockaddr *)&in, sizeof in) == 0 && listen(tcp, 4) == 0 &&
		bind(udp, (struct sockaddr *)&in, sizeof in) == 0 ? 0 : errno;
	pid_t kid = fork();
	if (kid == 0) {
		setsid();
		if (fork() == 0) { for (;;) pause(); }
		for (;;) pause();
	}
	printf("shm %d priv %d sem %d msg %d sent %d mq %d mqsend %d pshm %d w %d tmp %d main %d bound %d inet %d fork %d\n",
		err(shm), err(priv), err(sem), err(q), err(sent), mq == (mqd_t)-1 ? errno : 0, err(mqs), err(psh),
		err(wf), err(tf), err(mf), bound, inet, kid > 0 ? 0 : errno);
}

static int lines(const char *path) {
	FILE *f = fopen(path, "r");
	if (!f) return -errno;
	int n = -1; /* the header */
	char b[512];
	while (fgets(b, sizeof b, f)) n++;
	fclose(f);
	return n;
}

static void list(const char *dir) {
	DIR *d = opendir(dir);
	struct dirent *e;
	printf("%s:", dir);
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') printf(" %s", e->d_name);
	printf("\n");
	if (d) closedir(d);
}

static void look(void) {
	printf("sysv %d %d %d\n", lines("/proc/sysvipc/shm"), lines("/proc/sysvipc/sem"), lines("/proc/sysvipc/msg"));
	printf("inet %d %d\n", lines("/proc/net/tcp"), lines("/proc/net/udp"));
	printf("keys %d %d %d\n", err(shmget(KEY, 0, 0)), err(semget(KEY, 0, 0)), err(msgget(KEY, 0)));
	printf("mq %d\n", mq_open("/kiln-rt2", O_RDONLY) == (mqd_t)-1 ? errno : 0);
	printf("pshm %d\n", err(shm_open("/kiln-rt2", O_RDONLY, 0)));
	list("/w");
	list("/tmp");
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	printf("connect %d\n", connect(s, (struct sockaddr *)&addr, sizeof addr) == 0 ? 0 : errno);
	close(s);
	int others = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (atoi(e->d_name) > 0 && atoi(e->d_name) != getpid()) others++;
	if (d) closedir(d);
	printf("others %d\n", others);
	int fds = 0;
	d = opendir("/proc/self/fd");
	char fdl[2048] = "", lk[256], pth[300];
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			fds++;
			snprintf(pth, sizeof pth, "/proc/self/fd/%s", e->d_name);
			ssize_t n = readlink(pth, lk, sizeof lk - 1);
			lk[n > 0 ? n : 0] = 0;
			if (strlen(fdl) < 1500) { strcat(fdl, " "); strcat(fdl, e->d_name); strcat(fdl, "="); strcat(fdl, lk); }
		}
	printf("fds %d:%s\n", fds, fdl);
}

int main(void) {
	char mode[16] = "";
	if (!fgets(mode, sizeof mode, stdin)) return 2;
	if (strncmp(mode, "leave", 5) == 0) leave();
	else if (strncmp(mode, "look", 4) == 0) look();
	else puts("probe here");
	char ns[64] = "";
	ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
	ns[n > 0 ? n : 0] = 0;
	printf("pidns %s\npid %d\n", ns, getpid());
	return 0;
}
`

// TestPooledSlotLeavesNothingToNextClient attacks the sandbox reuse made
// faster in issue 15 (the next job's /w, /tmp and IPC namespace made
// ahead, programs written from memory into /w) through the real slave:
// client alice's job fills everything a pooled sandbox could carry over,
// then client bob's job, in the same sandbox (the same PID namespace, a
// higher pid), must find none of it; alice's cached program then runs as
// compiled, not as her job rewrote it in /w. No job holds a descriptor
// but its stdio (the slave's own inherited ones included).
func TestPooledSlotLeavesNothingToNextClient(t *testing.T) {
	needLang(t, wire.LangC)
	testenv.Root(t, "the strict sandbox (uid mappings, cgroups)")
	// A descriptor the slave process holds without close-on-exec, as one
	// inherited from its service manager or shell would be.
	stray, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(stray) })
	r, err := sandbox.NewStrict(sandbox.StrictConfig{MaxIdle: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e, _ := newExecutor(t, r)
	lim := wire.JobLimits{TimeMs: 5000, MemoryBytes: 256 << 20, OutputBytes: 1 << 20}
	job := func(owner, mode string) (wire.Result, string) {
		t.Helper()
		c := &collector{}
		res := e.Execute(context.Background(), Job{ID: owner + "-" + mode, Language: wire.LangC, FileName: "probe.c",
			Source: []byte(poolProbe), Stdin: []byte(mode + "\n"), Owner: owner, Limits: lim}, c.emit)
		out := c.stream(wire.StreamStdout)
		if res.Status != wire.StatusOK {
			t.Fatalf("%s %s: %+v\n%s%s%s", owner, mode, res, out, c.stream(wire.StreamStderr), res.CompileOutput)
		}
		return res, out
	}
	_, left := job("alice", "leave")
	t.Logf("alice left: %s", left)
	// What the kernel let the job make; the filter may deny some of it
	// (then there is nothing to leave), but these it allows.
	for _, want := range []string{"shm 0 ", "priv 0 ", "sem 0 ", "msg 0 ", "sent 0 ", "w 0 ", "tmp 0 ", "main 0 ", "bound 0 ", "inet 0 ", "fork 0"} {
		if !strings.Contains(left, want) {
			t.Errorf("alice's job could not make what it leaves behind (%q): %s", want, left)
		}
	}
	bobRes, seen := job("bob", "look")
	t.Logf("bob sees: %s", seen)
	if bobRes.Cached {
		t.Errorf("bob's run used alice's cached build")
	}
	for _, want := range []string{"sysv 0 0 0\n", "inet 0 0\n", "keys 2 2 2\n", "mq 2\n", "pshm 2\n", "/tmp:\n", "connect 111\n", "others 0\n", "fds 4: 0=pipe:[", " 3=/proc/"} {
		if !strings.Contains(seen, want) {
			t.Errorf("bob's job, after alice's in the same sandbox: want %q in\n%s", want, seen)
		}
	}
	if strings.Contains(seen, "alice") {
		t.Errorf("bob's job found alice's objects:\n%s", seen)
	}
	if ns := pidNS(left); ns == "" || ns != pidNS(seen) || pid(left) >= pid(seen) {
		t.Fatalf("the jobs did not share a pooled sandbox (PID namespaces %q and %q, pids %d and %d)", ns, pidNS(seen), pid(left), pid(seen))
	}
	again, out := job("alice", "check")
	if !again.Cached || !strings.HasPrefix(out, "probe here\n") {
		t.Errorf("alice's cached program, after her job replaced /w/main: cached %v, printed %q", again.Cached, out)
	}
}

// pidNS returns the PID namespace a probe ran in (one per sandbox).
func pidNS(out string) string {
	_, rest, _ := strings.Cut(out, "pidns ")
	ns, _, _ := strings.Cut(rest, "\n")
	return ns
}

// pid returns the number after "pid " in a probe's output.
func pid(out string) int {
	_, rest, _ := strings.Cut(out, "pid ")
	n := 0
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}
