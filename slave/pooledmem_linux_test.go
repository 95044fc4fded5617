package slave

import (
	"context"
	"testing"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

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
	needLang(t, wire.LangC)
	testenv.Root(t, "the strict sandbox (uid mappings, cgroups)")
	r, err := sandbox.NewStrict(sandbox.StrictConfig{MaxIdle: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e, _ := newExecutor(t, r)
	run := func(owner, mode string, mem int64) wire.Result {
		t.Helper()
		c := &collector{}
		res := e.Execute(context.Background(), Job{ID: owner + "-" + mode, Language: wire.LangC, FileName: "shm.c", Source: []byte(shmProbe),
			Stdin: []byte(mode + "\n"), Owner: owner, Limits: wire.JobLimits{TimeMs: 5000, MemoryBytes: mem, OutputBytes: 1 << 20}}, c.emit)
		want := map[string]string{"alloc": "allocated\n", "leave": "left\n"}[mode]
		if out := c.stream(wire.StreamStdout); res.Status != wire.StatusOK || out != want {
			t.Fatalf("%s's %s job: %+v %q", owner, mode, res, out)
		}
		return res
	}
	run("bob", "alloc", 64<<20) // both builds cached: the jobs below only run
	run("alice", "alloc", 200<<20)
	for range 3 {
		run("alice", "leave", 200<<20)
		run("bob", "alloc", 64<<20)
	}
}
