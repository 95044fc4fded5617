package slave

import (
	"strings"
	"testing"

	"kiln/transport/wire"
)

// A batch under the strict sandbox: the program and a Python checker run
// in fresh directories per case, with the checker's files readable inside.
func TestBatchStrict(t *testing.T) {
	needLang(t, wire.LangC)
	needLang(t, wire.LangPython)
	e, _ := newExecutor(t, newStrictRunner(t))
	cases := []wire.TestCase{
		{Stdin: []byte("7"), Expected: []byte("7\n")},
		{Stdin: []byte("8"), Expected: []byte("9\n")},
		{Stdin: []byte("9"), Expected: []byte("100\n")},
	}
	job := Job{Language: wire.LangC, FileName: "echo.c", Source: []byte(cEcho)}
	res, got := runBatchT(t, e, job, Batch{Spec: wire.TestSpec{Count: 3, Compare: wire.CompareDefault}, Cases: cases}, 2)
	if res.Status != wire.StatusOK || got[0].Status != wire.TestAccepted || got[1].Status != wire.TestWrongAnswer || got[2].Status != wire.TestWrongAnswer {
		t.Fatalf("default compare: %+v %+v", res, got)
	}
	spec := wire.TestSpec{Count: 3, Compare: wire.CompareChecker, CheckerFile: "check.py", CheckerLanguage: wire.LangPython}
	res, got = runBatchT(t, e, job, Batch{Spec: spec, Cases: cases, Checker: []byte(pyChecker)}, 2)
	if got[0].Status != wire.TestAccepted || got[1].Status != wire.TestAccepted || got[2].Status != wire.TestWrongAnswer ||
		!strings.Contains(got[2].Detail, "off by more than one") {
		t.Fatalf("checker: %+v %+v", res, got)
	}
}
