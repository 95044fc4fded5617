package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"kiln/client"
	"kiln/transport/wire"
)

// Exit codes of `kiln run --tests`.
const (
	exitTestsFailed = 106 // some test was not accepted
	exitJudgeError  = 107 // the checker failed
)

const testsHelp = `Test batches (--tests DIR):
  The program is compiled once and run on every NAME.in of DIR, judged against
  NAME.out or NAME.ans (see docs/client.md); a table fills in as verdicts come.
  106    some test was not accepted (wrong answer, time limit, ...)
  107    the checker failed (judge error)
`

// judgeFlags are the flags of `kiln run` for test batches and languages.
type judgeFlags struct {
	tests, checker, compare string
	relTol, absTol          float64
	stop                    bool
	lang                    string
	options                 optionsFlag
}

// optionsFlag collects repeated --option values.
type optionsFlag []string

func (o *optionsFlag) String() string     { return strings.Join(*o, " ") }
func (o *optionsFlag) Set(v string) error { *o = append(*o, v); return nil }

func (f *judgeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.tests, "tests", "", "judge the program on the tests of `DIR` (NAME.in with NAME.out or NAME.ans)")
	fs.StringVar(&f.checker, "checker", "", "checker program `FILE` for --tests (exit 42 accepted, 43 wrong answer)")
	fs.StringVar(&f.compare, "compare", "", "compare `MODE` for --tests: default, exact, tokens or checker")
	fs.Float64Var(&f.relTol, "rel-tol", 0, "relative tolerance of numbers with --compare tokens")
	fs.Float64Var(&f.absTol, "abs-tol", 0, "absolute tolerance of numbers with --compare tokens")
	fs.BoolVar(&f.stop, "stop-on-first-failure", false, "skip the tests not started once one fails")
	fs.StringVar(&f.lang, "lang", "", "`LANGUAGE` of FILE when its extension does not say (a configured one, e.g. go)")
	fs.Var(&f.options, "option", "compiler `OPTION` among those the language allows, e.g. -std=c++20 (repeatable)")
}

// loadTests reads the tests folder and the checker, refusing a bad one
// before anything is sent.
func (f *judgeFlags) loadTests() (*client.Tests, error) {
	if f.tests == "" {
		if f.checker != "" || f.compare != "" || f.stop {
			return nil, fmt.Errorf("--checker, --compare and --stop-on-first-failure go with --tests DIR")
		}
		return nil, nil
	}
	cases, err := client.LoadTests(f.tests)
	if err != nil {
		return nil, err
	}
	t := &client.Tests{Cases: cases, Compare: f.compare, RelTol: f.relTol, AbsTol: f.absTol, StopOnFirstFailure: f.stop}
	if f.compare != "" && !slices.Contains(wire.CompareModes(), f.compare) {
		return nil, fmt.Errorf("%w: --compare %q: want %s", client.ErrBadInput, f.compare, strings.Join(wire.CompareModes(), ", "))
	}
	if f.checker != "" {
		src, err := os.ReadFile(f.checker)
		if err != nil {
			return nil, fmt.Errorf("%w: checker: %w", client.ErrBadInput, err)
		}
		t.Checker = &client.Checker{FileName: filepath.Base(f.checker), Source: src}
	}
	return t, nil
}

// testsView prints a batch's verdicts as they come: a table on stdout
// (or nothing with --json) and a progress line on a terminal's stderr.
type testsView struct {
	e        env
	tests    *client.Tests
	json     bool
	progress bool
	done     int
	failed   int
	header   bool
}

func (v *testsView) verdict(tv wire.TestVerdict) {
	v.done++
	if tv.Status != wire.TestAccepted {
		v.failed++
	}
	if v.json {
		return
	}
	if v.progress {
		fmt.Fprint(v.e.stderr, "\r\033[K")
	}
	if !v.header {
		v.header = true
		fmt.Fprintf(v.e.stdout, "%5s  %-16s %-14s %8s %8s %10s  %s\n", "TEST", "NAME", "STATUS", "WALL", "CPU", "MEMORY", "DETAIL")
	}
	fmt.Fprintf(v.e.stdout, "%5d  %-16s %-14s %6dms %6dms %10s  %s\n", tv.Index+1, truncate(v.name(tv.Index), 16), tv.Status,
		tv.WallMs, tv.CPUMs, formatSize(tv.MemoryKiB<<10), oneLine(tv.Detail, 80))
	if v.progress {
		fmt.Fprintf(v.e.stderr, "[%d/%d] %d passed, %d failed", v.done, len(v.tests.Cases), v.done-v.failed, v.failed)
	}
}

func (v *testsView) name(i int) string {
	if i >= 0 && i < len(v.tests.Cases) {
		return v.tests.Cases[i].Name
	}
	return "?"
}

// followTests waits for a batch, showing its verdicts, and returns the
// exit code.
func (o *runOptions) followTests(ctx context.Context, e env, job *client.Job, tests *client.Tests) int {
	v := &testsView{e: e, tests: tests, json: o.json, progress: !o.json && isTerminal(e.stderr)}
	events := job.Events()
	for open := true; open; {
		select {
		case ev, ok := <-events:
			if open = ok; ok && ev.Test != nil {
				v.verdict(*ev.Test)
			} else if ok {
				o.show(e, job, ev)
			}
		case <-ctx.Done():
			return cancelJob(ctx, e, job)
		}
	}
	if v.progress && v.done > 0 {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	out, err := job.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return cancelJob(ctx, e, job)
		}
		return reportErr(e, "run", err)
	}
	code := testsExitCode(out.Result)
	if o.json {
		if err := writeTestsJSON(e.stdout, out, tests); err != nil {
			fmt.Fprintf(e.stderr, "kiln run: %v\n", err)
			return exitInternal
		}
		return code
	}
	r := out.Result
	if r.Status == wire.StatusCompileError && len(out.CompileOutput) > 0 {
		e.stderr.Write(out.CompileOutput)
	}
	if r.Tests == nil || r.Status != wire.StatusOK {
		fmt.Fprintln(e.stderr, summary(out))
		return code
	}
	fmt.Fprintln(e.stderr, testsSummary(out, tests))
	return code
}

// testsExitCode maps a batch's result to the exit code of `kiln run`.
func testsExitCode(r wire.Result) int {
	switch {
	case r.Status != wire.StatusOK:
		return exitCodeOfResult(r)
	case r.Tests == nil:
		return exitInternal
	case r.Tests.Status == wire.TestAccepted:
		return 0
	case r.Tests.Status == wire.TestJudgeError:
		return exitJudgeError
	}
	return exitTestsFailed
}

// testsSummary is the line that ends a batch.
func testsSummary(out client.Outcome, tests *client.Tests) string {
	s := out.Result.Tests
	var b strings.Builder
	fmt.Fprintf(&b, "kiln run: job %s%s: passed %d/%d", out.Job, onSlave(out.Result.Slave), s.Passed, s.Total)
	if s.Status != wire.TestAccepted {
		fmt.Fprintf(&b, ", %s", s.Status)
		for _, v := range out.Tests {
			if v.Status == s.Status {
				fmt.Fprintf(&b, " (first: test %d %s)", v.Index+1, tests.Cases[v.Index].Name)
				break
			}
		}
	}
	if out.Result.Detail != "" {
		fmt.Fprintf(&b, " — %s", oneLine(out.Result.Detail, 200))
	}
	fmt.Fprintf(&b, "; worst wall %d ms, cpu %d ms, memory %s", s.WorstWallMs, s.WorstCPUMs, formatSize(s.WorstMemoryKiB<<10))
	if out.Result.Compiler != "" {
		fmt.Fprintf(&b, "; %s", out.Result.Compiler)
		if out.Result.Cached {
			b.WriteString(" (cached build)")
		}
	}
	return b.String()
}

// testJSON is one test in `kiln run --tests --json`.
type testJSON struct {
	Index     int    `json:"index"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	ExitCode  int    `json:"exit_code"`
	Signal    int    `json:"signal"`
	WallMs    int64  `json:"wall_ms"`
	CPUMs     int64  `json:"cpu_ms"`
	MemoryKiB int64  `json:"memory_kib"`
	Detail    string `json:"detail,omitempty"`
	Output    string `json:"output,omitempty"`
}

// summaryJSON is the summary of a batch in `kiln run --tests --json`.
type summaryJSON struct {
	Total          int    `json:"total"`
	Ran            int    `json:"ran"`
	Passed         int    `json:"passed"`
	Status         string `json:"status"`
	WorstWallMs    int64  `json:"worst_wall_ms"`
	WorstCPUMs     int64  `json:"worst_cpu_ms"`
	WorstMemoryKiB int64  `json:"worst_memory_kib"`
}

// testsJSON is the object `kiln run --tests --json` prints.
type testsJSON struct {
	runJSON
	Summary *summaryJSON `json:"summary"`
	Tests   []testJSON   `json:"tests"`
}

func writeTestsJSON(w io.Writer, out client.Outcome, tests *client.Tests) error {
	r := out.Result
	obj := testsJSON{runJSON: runJSON{Status: r.Status, ExitCode: r.ExitCode, Signal: r.Signal, CompileOutput: string(out.CompileOutput),
		WallMs: r.WallMs, CPUMs: r.CPUMs, MemoryKiB: r.MemoryKiB, Slave: r.Slave, Language: r.Language, Compiler: r.Compiler,
		Cached: r.Cached, Job: out.Job, Attempts: out.Attempts, Detail: r.Detail}, Tests: []testJSON{}}
	if s := r.Tests; s != nil {
		obj.Summary = &summaryJSON{Total: s.Total, Ran: s.Ran, Passed: s.Passed, Status: s.Status,
			WorstWallMs: s.WorstWallMs, WorstCPUMs: s.WorstCPUMs, WorstMemoryKiB: s.WorstMemoryKiB}
	}
	for _, v := range out.Tests {
		name := ""
		if v.Index >= 0 && v.Index < len(tests.Cases) {
			name = tests.Cases[v.Index].Name
		}
		obj.Tests = append(obj.Tests, testJSON{Index: v.Index, Name: name, Status: v.Status, ExitCode: v.ExitCode, Signal: v.Signal,
			WallMs: v.WallMs, CPUMs: v.CPUMs, MemoryKiB: v.MemoryKiB, Detail: v.Detail, Output: string(v.Output)})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(obj)
}

// oneLine shortens s to one line of at most n bytes.
func oneLine(s string, n int) string {
	s, _, _ = strings.Cut(s, "\n")
	return truncate(s, n)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
