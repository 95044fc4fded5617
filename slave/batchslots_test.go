package slave

import (
	"testing"
	"time"

	"kiln/transport/wire"
)

// TestBatchLendsSlotsBack: a test batch runs its cases on the slave's
// free slots as well as its own, which the master does not know of: it
// counts the batch as one job. A job the master then assigns, for a slot
// it sees free, waited on the slave for the whole batch while its
// deadline ran (time limit + 90 s from assignment): a long batch made an
// honest slave miss the deadlines of the jobs placed beside it, and be
// struck for each. A batch now borrows a free slot per case, so a waiting
// job takes the next one a case gives back: it runs while the batch goes
// on, on fewer slots.
func TestBatchLendsSlotsBack(t *testing.T) {
	needLang(t, wire.LangPython)
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	runSlave(t, m, sb) // 2 slots
	ms := m.next(t)
	var reg wire.Register
	ms.expect(t, wire.MsgRegister, &reg)

	const cases = 8
	b := wire.TestBundle{Spec: wire.EncodeValue(&wire.TestSpec{Count: cases, Compare: wire.CompareDefault})}
	for range cases {
		b.Cases = append(b.Cases, wire.TestCase{Stdin: []byte("x\n"), Expected: []byte("x\n")})
	}
	bundle := wire.EncodeValue(&b)
	slow := []byte("import time\ntime.sleep(0.3)\nprint(input())\n")
	ms.sendFile(t, "batch", wire.FileSource, slow)
	ms.sendFile(t, "batch", wire.FileStdin, bundle)
	ms.assign(t, wire.Assign{JobID: "batch", Attempt: 1, Language: wire.LangPython, FileName: "a.py",
		SourceSize: int64(len(slow)), StdinSize: int64(len(bundle)), Tests: cases, Limits: wire.JobLimits{TimeMs: 5000}})
	var v wire.TestResult
	ms.expect(t, wire.MsgTestResult, &v) // the batch is running, on both slots
	quick := []byte("print('quick')\n")
	ms.sendFile(t, "quick", wire.FileSource, quick)
	assigned := time.Now()
	ms.assign(t, wire.Assign{JobID: "quick", Attempt: 1, Language: wire.LangPython, FileName: "q.py", SourceSize: int64(len(quick))})
	var order []string
	var quickAfter time.Duration
	for len(order) < 2 {
		var r wire.Result
		ms.expect(t, wire.MsgResult, &r)
		if r.Status != wire.StatusOK {
			t.Fatalf("%s: %+v", r.JobID, r)
		}
		if r.JobID == "quick" {
			quickAfter = time.Since(assigned)
		}
		order = append(order, r.JobID)
	}
	t.Logf("results in order %v; the job assigned during the batch answered after %v", order, quickAfter)
	if order[0] != "quick" {
		t.Fatalf("the job assigned during the batch waited for all of it (%v after its Assign): results %v", quickAfter, order)
	}
}
