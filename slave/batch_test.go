package slave

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// verdicts collects reported verdicts and checks report is never called
// concurrently.
type verdicts struct {
	mu   sync.Mutex
	busy bool
	got  map[int]wire.TestVerdict
	t    *testing.T
}

func (v *verdicts) report(tv wire.TestVerdict) {
	if !v.mu.TryLock() {
		v.t.Error("report called concurrently")
		v.mu.Lock()
	}
	defer v.mu.Unlock()
	if _, dup := v.got[tv.Index]; dup {
		v.t.Errorf("test %d reported twice", tv.Index)
	}
	v.got[tv.Index] = tv
}

func runBatchT(t *testing.T, e *Executor, job Job, b Batch, workers int) (wire.Result, map[int]wire.TestVerdict) {
	t.Helper()
	v := &verdicts{got: map[int]wire.TestVerdict{}, t: t}
	if job.ID == "" {
		job.ID = t.Name()
	}
	res := e.ExecuteTests(context.Background(), job, b, workers, v.report)
	return res, v.got
}

// doubler reads n and prints 2n; on 33 it loops, on 17 it prints one more.
const doublerCPP = `#include <cstdio>
int main() {
	long n;
	if (scanf("%ld", &n) != 1) return 3;
	if (n == 33) { volatile long x = 0; for (;;) x++; }
	if (n == 17) n++;
	printf("%ld\n", 2 * n);
	return 0;
}
`

// A C++ submission against 50 tests, one wrong answer and one time limit
// among them: every verdict is asserted, the program is compiled once and
// the runs share the slots.
func TestBatchFiftyCases(t *testing.T) {
	needLang(t, wire.LangCPP)
	e, _ := newExecutor(t, nil)
	var cases []wire.TestCase
	for i := range 50 {
		cases = append(cases, wire.TestCase{Stdin: []byte(strconv.Itoa(i) + "\n"), Expected: []byte(strconv.Itoa(2*i) + "\n")})
	}
	b := Batch{Spec: wire.TestSpec{Count: 50, Compare: wire.CompareDefault}, Cases: cases}
	// 2 s: room for a loaded machine; only the looping case reaches it.
	job := Job{Language: wire.LangCPP, FileName: "doubler.cpp", Source: []byte(doublerCPP), Limits: wire.JobLimits{TimeMs: 2000}}
	start := time.Now()
	res, got := runBatchT(t, e, job, b, 2)
	if res.Status != wire.StatusOK || res.Tests == nil {
		t.Fatalf("result %+v\n%s", res, res.CompileOutput)
	}
	for i := range 50 {
		want := wire.TestAccepted
		switch i {
		case 17:
			want = wire.TestWrongAnswer
		case 33:
			want = wire.TestTimeLimit
		}
		if got[i].Status != want || got[i].Index != i {
			t.Errorf("test %d: %+v, want %s", i, got[i], want)
		}
	}
	if d := got[17].Detail; !strings.Contains(d, `line 1: expected "34", got "36"`) || string(got[17].Output) != "36\n" {
		t.Errorf("wrong answer detail %q output %q", d, got[17].Output)
	}
	s := *res.Tests
	if s.Total != 50 || s.Ran != 50 || s.Passed != 48 || s.Status != wire.TestWrongAnswer || s.WorstWallMs < 1900 {
		t.Errorf("summary %+v", s)
	}
	t.Logf("50 tests in %v", time.Since(start))
	// The build is cached: a second batch does not compile again.
	if res2, _ := runBatchT(t, e, job, Batch{Spec: wire.TestSpec{Count: 1, Compare: wire.CompareDefault}, Cases: cases[:1]}, 1); !res2.Cached || res2.Tests.Status != wire.TestAccepted {
		t.Errorf("second batch %+v %+v", res2, res2.Tests)
	}
}

// Runtime errors, output and memory limits, per-test limits, and
// stopping at the first failure.
func TestBatchStatuses(t *testing.T) {
	needLang(t, wire.LangCPP)
	e, _ := newExecutor(t, nil)
	src := `#include <cstdio>
#include <cstdlib>
#include <vector>
#include <string>
int main() {
	char w[32] = {0};
	if (scanf("%31s", w) != 1) return 3;
	std::string s(w);
	if (s == "rte") abort();
	if (s == "ole") for (;;) fputs("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", stdout);
	if (s == "mle") { std::vector<char> v(1u << 30, 1); printf("%d\n", v[12345]); }
	puts(w);
	return 0;
}
`
	cases := []wire.TestCase{
		{Stdin: []byte("ok"), Expected: []byte("ok\n")},
		{Stdin: []byte("rte"), Expected: []byte("rte\n")},
		{Stdin: []byte("ole"), Expected: []byte("")},
		{Stdin: []byte("mle"), Expected: []byte("")},
	}
	lims := []wire.JobLimits{{}, {}, {OutputBytes: 1 << 10}, {MemoryBytes: 64 << 20}}
	job := Job{Language: wire.LangCPP, FileName: "s.cpp", Source: []byte(src)}
	res, got := runBatchT(t, e, job, Batch{Spec: wire.TestSpec{Count: 4, Compare: wire.CompareExact, Limits: lims}, Cases: cases}, 2)
	want := []string{wire.TestAccepted, wire.TestRuntimeError, wire.TestOutputLimit, wire.TestMemoryLimit}
	for i, w := range want {
		if got[i].Status != w {
			t.Errorf("case %d: %+v, want %s", i, got[i], w)
		}
	}
	if res.Tests.Status != wire.TestRuntimeError || res.Tests.Passed != 1 {
		t.Errorf("summary %+v", res.Tests)
	}
	// Stop on the first failure: one worker, the cases after case 1 are skipped.
	res, got = runBatchT(t, e, job, Batch{Spec: wire.TestSpec{Count: 4, Compare: wire.CompareExact, Limits: lims, StopOnFirstFailure: true}, Cases: cases}, 1)
	if len(got) != 2 || res.Tests.Ran != 2 || res.Tests.Status != wire.TestRuntimeError {
		t.Errorf("stop on first failure: ran %d %+v", len(got), res.Tests)
	}
	// A compile error ends the batch before any case.
	res, got = runBatchT(t, e, Job{Language: wire.LangCPP, FileName: "bad.cpp", Source: []byte("int main( {")},
		Batch{Spec: wire.TestSpec{Count: 1, Compare: wire.CompareExact}, Cases: cases[:1]}, 1)
	if res.Status != wire.StatusCompileError || len(got) != 0 || res.Tests.Ran != 0 {
		t.Errorf("compile error: %+v %+v", res, res.Tests)
	}
}

// Every compare mode, with the edge cases of real judges' test data.
func TestCompareModes(t *testing.T) {
	for _, tc := range []struct {
		mode          string
		want, got     string
		rel, abs      float64
		ok            bool
		detailHasText string
	}{
		{wire.CompareDefault, "1 2\n3\n", "1 2\n3\n", 0, 0, true, ""},
		{wire.CompareDefault, "1 2\n3\n", "1 2   \n3", 0, 0, true, ""},               // trailing spaces, no final newline
		{wire.CompareDefault, "1 2\n3\n", "1 2\r\n3\r\n", 0, 0, true, ""},            // CRLF
		{wire.CompareDefault, "1 2\n3\n", "1 2\n3\n\n\n  \n", 0, 0, true, ""},        // trailing blank lines
		{wire.CompareDefault, "1 2\n3\n", " 1 2\n3\n", 0, 0, false, "line 1"},        // leading space matters
		{wire.CompareDefault, "1 2\n3\n", "1  2\n3\n", 0, 0, false, "line 1"},        // inner space matters
		{wire.CompareDefault, "1\n\n2\n", "1\n2\n", 0, 0, false, "line 2"},           // inner blank line matters
		{wire.CompareDefault, "1\n2\n", "1\n", 0, 0, false, "got end of output"},     // missing line
		{wire.CompareExact, "1 2\n", "1 2\n", 0, 0, true, ""},                        //
		{wire.CompareExact, "1 2\n", "1 2\r\n", 0, 0, false, "byte 3"},               // CRLF is a difference
		{wire.CompareExact, "1 2\n", "1 2 \n", 0, 0, false, "byte 3"},                // so is a trailing space
		{wire.CompareTokens, "1 2\n3", "1\n2\r\n  3  \n", 0, 0, true, ""},            // any white space
		{wire.CompareTokens, "0.5", "0.50000005", 0, 1e-7, true, ""},                 // within 1e-7
		{wire.CompareTokens, "0.5", "0.5000002", 0, 1e-7, false, "token 1"},          // beyond 1e-7
		{wire.CompareTokens, "1000000", "1000000.05", 1e-7, 0, true, ""},             // relative
		{wire.CompareTokens, "1000000", "1000000.5", 1e-7, 0, false, "token 1"},      // relative, beyond
		{wire.CompareTokens, "1.0 abc", "1 abc", 0, 0, true, ""},                     // numbers compare as numbers
		{wire.CompareTokens, "abc", "abd", 1, 1, false, `expected "abc", got "abd"`}, // words exactly
		{wire.CompareTokens, "nan", "nan", 1, 1, true, ""},                           // same text
		{wire.CompareTokens, "1", "nan", 1, 1, false, "token 1"},                     // NaN matches no number
		{wire.CompareTokens, "1 2", "1", 0, 0, false, "got end of output"},
	} {
		ok, detail := compareOutput(tc.mode, []byte(tc.want), []byte(tc.got), tc.rel, tc.abs)
		if ok != tc.ok || !strings.Contains(detail, tc.detailHasText) {
			t.Errorf("%s %q vs %q (rel %g abs %g): %v %q, want %v %q", tc.mode, tc.want, tc.got, tc.rel, tc.abs, ok, detail, tc.ok, tc.detailHasText)
		}
	}
}

// pyChecker accepts an output whose number is within 1 of the expected one.
const pyChecker = `import sys
inp, exp, out = (open(p).read() for p in sys.argv[1:4])
if abs(int(exp) - int(out)) <= 1:
    sys.exit(42)
print("off by more than one:", out.strip())
sys.exit(43)
`

const cEcho = `#include <stdio.h>
int main(void) { long n; if (scanf("%ld", &n) != 1) return 3; printf("%ld\n", n); return 0; }
`

// A checker in Python judges a C program: its exit code decides.
func TestBatchPythonChecker(t *testing.T) {
	needLang(t, wire.LangC)
	needLang(t, wire.LangPython)
	e, _ := newExecutor(t, nil)
	cases := []wire.TestCase{
		{Stdin: []byte("10"), Expected: []byte("10")},
		{Stdin: []byte("10"), Expected: []byte("11")},
		{Stdin: []byte("10"), Expected: []byte("15")},
	}
	spec := wire.TestSpec{Count: 3, Compare: wire.CompareChecker, CheckerFile: "check.py", CheckerLanguage: wire.LangPython}
	res, got := runBatchT(t, e, Job{Language: wire.LangC, FileName: "echo.c", Source: []byte(cEcho)},
		Batch{Spec: spec, Cases: cases, Checker: []byte(pyChecker)}, 2)
	if got[0].Status != wire.TestAccepted || got[1].Status != wire.TestAccepted || got[2].Status != wire.TestWrongAnswer {
		t.Fatalf("verdicts %+v (%+v)", got, res)
	}
	if !strings.Contains(got[2].Detail, "off by more than one: 10") {
		t.Errorf("checker message not in the detail: %q", got[2].Detail)
	}
}

// A checker that crashes, loops, or does not compile is a judge error,
// never a wrong answer.
func TestBatchBrokenChecker(t *testing.T) {
	needLang(t, wire.LangC)
	needLang(t, wire.LangPython)
	e, _ := newExecutor(t, nil)
	// The checker's time limit is twice the case's: 2 s.
	job := Job{Language: wire.LangC, FileName: "echo.c", Source: []byte(cEcho), Limits: wire.JobLimits{TimeMs: 1000}}
	cases := []wire.TestCase{{Stdin: []byte("1"), Expected: []byte("1")}}
	for _, tc := range []struct {
		name, file, lang, src, want string
	}{
		{"python raises", "c.py", wire.LangPython, "raise RuntimeError('checker bug')\n", "checker failed (exit code 1"},
		{"python exits 0", "c.py", wire.LangPython, "import sys\nsys.exit(0)\n", "want exit 42 accepted or 43 wrong answer"},
		{"c segfaults", "c.c", wire.LangC, "int main(void){ volatile int *p = 0; return *p; }\n", "checker failed (killed by signal"},
		{"python loops", "c.py", wire.LangPython, "while True:\n    pass\n", "checker ran over its time limit of 2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := wire.TestSpec{Count: 1, Compare: wire.CompareChecker, CheckerFile: tc.file, CheckerLanguage: tc.lang}
			res, got := runBatchT(t, e, job, Batch{Spec: spec, Cases: cases, Checker: []byte(tc.src)}, 1)
			if got[0].Status != wire.TestJudgeError || !strings.Contains(got[0].Detail, tc.want) || res.Tests.Status != wire.TestJudgeError {
				t.Fatalf("verdict %+v summary %+v; want judge_error %q", got[0], res.Tests, tc.want)
			}
		})
	}
	spec := wire.TestSpec{Count: 1, Compare: wire.CompareChecker, CheckerFile: "c.c", CheckerLanguage: wire.LangC}
	res, got := runBatchT(t, e, job, Batch{Spec: spec, Cases: cases, Checker: []byte("int main( {")}, 1)
	if len(got) != 0 || res.Tests.Status != wire.TestJudgeError || !strings.Contains(res.Detail, "checker c.c: compile_error") {
		t.Fatalf("checker compile error: %+v %+v", res, res.Tests)
	}
}

// sealedBundle seals a bundle as the client does.
func sealedBundle(t *testing.T, key []byte, spec wire.TestSpec, cases []wire.TestCase) wire.TestBundle {
	t.Helper()
	must := func(b []byte, err error) []byte {
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := wire.TestBundle{Spec: must(seal.Seal(key, wire.LabelTestSpec, wire.EncodeValue(&spec)))}
	for i, c := range cases {
		b.Cases = append(b.Cases, wire.TestCase{
			Stdin:    must(seal.Seal(key, wire.TestLabel("stdin", i), c.Stdin)),
			Expected: must(seal.Seal(key, wire.TestLabel("expected", i), c.Expected)),
		})
	}
	return b
}

// A master that swaps two sealed cases, swaps the expected outputs of two
// cases, drops a case or replays one from another job gets the whole
// batch refused.
func TestOpenBatchRefusesSwappedCases(t *testing.T) {
	key, other := seal.NewContentKey(), seal.NewContentKey()
	var cases []wire.TestCase
	for i := range 3 {
		cases = append(cases, wire.TestCase{Stdin: []byte(fmt.Sprint("in", i)), Expected: []byte(fmt.Sprint("out", i))})
	}
	spec := wire.TestSpec{Count: 3, Compare: wire.CompareDefault}
	good := sealedBundle(t, key, spec, cases)
	b, err := openBatch(wire.EncodeValue(&good), key, 3)
	if err != nil || string(b.Cases[2].Stdin) != "in2" || string(b.Cases[1].Expected) != "out1" {
		t.Fatalf("good bundle: %v %+v", err, b)
	}
	swapped := sealedBundle(t, key, spec, cases)
	swapped.Cases[0], swapped.Cases[1] = swapped.Cases[1], swapped.Cases[0]
	swappedExp := sealedBundle(t, key, spec, cases)
	swappedExp.Cases[0].Expected, swappedExp.Cases[2].Expected = swappedExp.Cases[2].Expected, swappedExp.Cases[0].Expected
	dropped := sealedBundle(t, key, spec, cases)
	dropped.Cases = dropped.Cases[:2]
	replayed := sealedBundle(t, key, spec, cases)
	replayed.Cases[1] = sealedBundle(t, other, spec, cases).Cases[1]
	for name, tc := range map[string]struct {
		b wire.TestBundle
		n int
	}{"swapped cases": {swapped, 3}, "swapped expected": {swappedExp, 3}, "dropped, announced 2": {dropped, 2}, "replayed": {replayed, 3}} {
		if _, err := openBatch(wire.EncodeValue(&tc.b), key, tc.n); !errors.Is(err, errSealedAuth) {
			t.Errorf("%s: err %v, want errSealedAuth", name, err)
		}
	}
	if _, err := openBatch(wire.EncodeValue(&dropped), key, 3); err == nil {
		t.Error("a bundle with fewer cases than announced opened")
	}
	if _, err := openBatch([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, nil, 1); !errors.Is(err, wire.ErrMalformed) {
		t.Errorf("garbage bundle: %v", err)
	}
}
