package slave

import (
	"strings"
	"testing"

	"kiln/transport/wire"
)

// bigProgram is three lines of C whose build is just over the compile
// cache's 64 MiB per artifact: one variable aligned to 32 MiB makes the
// linker pad the program's data to that boundary twice.
const bigProgram = `char a[16] = {1};
char b[16] __attribute__((aligned(1 << 25))) = {2};
int main(void) { return a[0] + b[0] - 3; }
`

// TestBigBuildIsNoSlaveFault: a test batch reads its built program (and
// checker) into memory, at most 64 MiB each, to write it into every
// case's sandbox. A client's build past that bound ended the batch as
// the slave's own failure (internal_error with slave_fault: "read the
// compiled program"), so the master struck the slave and ran the batch
// again elsewhere, striking that slave too: three lines of C quarantined
// honest slaves. It is the program's doing: compile_error, no fault. For a
// checker, the batch's judge error.
func TestBigBuildIsNoSlaveFault(t *testing.T) {
	needLang(t, wire.LangC)
	needLang(t, wire.LangPython)
	e, _ := newExecutor(t, newStrictRunner(t))
	cases := []wire.TestCase{{Stdin: []byte("7"), Expected: []byte("7\n")}}
	big := Job{Language: wire.LangC, FileName: "big.c", Source: []byte(bigProgram)}
	res, _ := runBatchT(t, e, big, Batch{Spec: wire.TestSpec{Count: 1, Compare: wire.CompareDefault}, Cases: cases}, 1)
	if res.SlaveFault || res.Status != wire.StatusCompileError || !strings.Contains(res.Detail, "bytes") {
		t.Fatalf("a program built past the bound: %+v", res)
	}
	spec := wire.TestSpec{Count: 1, Compare: wire.CompareChecker, CheckerFile: "check.c", CheckerLanguage: wire.LangC}
	echo := Job{Language: wire.LangC, FileName: "echo.c", Source: []byte(cEcho)}
	res, _ = runBatchT(t, e, echo, Batch{Spec: spec, Cases: cases, Checker: []byte(bigProgram)}, 1)
	if res.SlaveFault || res.Status != wire.StatusOK || res.Tests == nil || res.Tests.Status != wire.TestJudgeError {
		t.Fatalf("a checker built past the bound: %+v %+v", res, res.Tests)
	}
}

// TestBrokenCheckerIsNoSlaveFault: a checker that does not compile ends
// the batch with the program's build status, ok, and the summary's
// judge_error. Its Result had no status at all, which the master takes
// for a slave making statuses up (TestHostileSlaveInventsStatuses): it
// struck the slave and ran the batch again elsewhere, striking that one
// too, so a client's broken checker quarantined honest slaves.
func TestBrokenCheckerIsNoSlaveFault(t *testing.T) {
	needLang(t, wire.LangC)
	e, _ := newExecutor(t, newStrictRunner(t))
	cases := []wire.TestCase{{Stdin: []byte("7"), Expected: []byte("7\n")}}
	spec := wire.TestSpec{Count: 1, Compare: wire.CompareChecker, CheckerFile: "check.c", CheckerLanguage: wire.LangC}
	echo := Job{Language: wire.LangC, FileName: "echo.c", Source: []byte(cEcho)}
	res, _ := runBatchT(t, e, echo, Batch{Spec: spec, Cases: cases, Checker: []byte("this is not C\n")}, 1)
	if res.Status != wire.StatusOK || res.SlaveFault || res.Tests == nil || res.Tests.Status != wire.TestJudgeError {
		t.Fatalf("a checker that does not compile: status %q, %+v", res.Status, res.Tests)
	}
}

// TestUnstartableProgramIsNoSlaveFault: a client's C program can build
// to a file the kernel refuses to execute: an .interp section of its own
// past PATH_MAX makes execve fail with ENOEXEC. The sandbox reports that
// as ErrStart, the request's fault, but the executor ended the job
// internal_error with slave_fault, so the master struck the slave and ran
// the job again elsewhere, striking that one too. It is a runtime error
// of the program.
func TestUnstartableProgramIsNoSlaveFault(t *testing.T) {
	needLang(t, wire.LangC)
	e, _ := newExecutor(t, newStrictRunner(t))
	src := `const char interp[5000] __attribute__((section(".interp"))) = "x";
int main(void) { return 0; }
`
	res, _ := execute(t, e, Job{Language: wire.LangC, FileName: "noexec.c", Source: []byte(src),
		Limits: wire.JobLimits{TimeMs: 2000, MemoryBytes: 64 << 20, OutputBytes: 1 << 20}})
	if res.SlaveFault || res.Status != wire.StatusRuntimeError {
		t.Fatalf("a program the kernel will not execute: %+v", res)
	}
}

// TestTinyMemoryLimitIsNoSlaveFault: a client's memory limit applies from
// the launcher's exec on (the job is born in its memory group), and one of
// a few hundred KiB had the group's OOM killer end the job's first
// process while the sandbox started it; the executor ended the job
// internal_error with slave_fault, and the master struck the slave and the
// next one that ran it. Each such run ends memory_limit (or, when even the
// fork of the launcher cannot be charged, runtime_error).
func TestTinyMemoryLimitIsNoSlaveFault(t *testing.T) {
	needLang(t, wire.LangC)
	e, _ := newExecutor(t, newStrictRunner(t))
	src := "int main(void) { return 0; }\n"
	ooms := 0
	for kib := int64(100); kib <= 400; kib += 12 {
		res, _ := execute(t, e, Job{Language: wire.LangC, FileName: "tiny.c", Source: []byte(src),
			Limits: wire.JobLimits{TimeMs: 2000, MemoryBytes: kib << 10, OutputBytes: 1 << 20}})
		if res.SlaveFault || res.Status == wire.StatusInternalError {
			t.Fatalf("memory limit %d KiB: %+v", kib, res)
		}
		if res.Status == wire.StatusMemoryLimit {
			ooms++
		}
	}
	if ooms == 0 {
		t.Fatal("no run between 100 and 400 KiB was over its memory limit")
	}
}
