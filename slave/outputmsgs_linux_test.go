package slave

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// TestProgramSetsOutputMessages: the slave sends one Output message per
// read of the job's pipes, so a program that writes a byte at a time and
// pauses between writes decides how many messages its attempt takes. The
// master's cap on them (JobBudget.OutputMessages) is therefore the
// program's bound, not a check of the slave: past it the job ends
// output_limit and the slave is not struck (master:
// TestManySmallOutputsStrikeNoSlave).
func TestProgramSetsOutputMessages(t *testing.T) {
	needLang(t, wire.LangC)
	testenv.Root(t, "the strict sandbox (uid mappings, cgroups)")
	r, err := sandbox.NewStrict(sandbox.StrictConfig{MaxIdle: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e, _ := newExecutor(t, r)
	const writes = 1000
	src := `#include <unistd.h>
int main(void) { for (int i = 0; i < 1000; i++) { write(1, ".", 1); usleep(300); } return 0; }
`
	var msgs atomic.Int64
	var out strings.Builder
	res := e.Execute(context.Background(), Job{ID: "ticks", Language: wire.LangC, FileName: "ticks.c", Source: []byte(src), Owner: "alice",
		Limits: wire.JobLimits{TimeMs: 5000, MemoryBytes: 64 << 20, OutputBytes: 1 << 20}}, func(_ uint8, data []byte) {
		msgs.Add(1)
		out.Write(data)
	})
	if res.Status != wire.StatusOK || out.Len() != writes {
		t.Fatalf("%+v: %d bytes of output", res, out.Len())
	}
	t.Logf("%d one-byte writes: %d Output messages", writes, msgs.Load())
	if msgs.Load() < writes/2 {
		t.Fatalf("%d one-byte writes made only %d messages: the slave coalesces output now, so the master's message cap could count against the slave again (TestManySmallOutputsStrikeNoSlave)", writes, msgs.Load())
	}
}
