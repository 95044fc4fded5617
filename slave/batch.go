package slave

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// Bounds of a checker run, per case: its time limit is twice the case's,
// at least 1 s and at most checkerWall.
const (
	checkerWall   = 10 * time.Second
	checkerMemory = 512 << 20
	checkerOutput = 64 << 10
	// Exit codes of a checker (the Kattis and DOMjudge output validator
	// convention): anything else is a judge error.
	checkerAccepted = 42
	checkerWrong    = 43
)

// Batch is an opened test batch: its spec, its cases and its checker's
// source.
type Batch struct {
	Spec    wire.TestSpec
	Cases   []wire.TestCase
	Checker []byte
}

// ExecuteTests compiles job once (the compile cache applies) and runs it
// on every case of b in a fresh directory each, on up to workers cases at
// once, judging each one as it ends; report gets each verdict (never
// concurrently). With Spec.StopOnFirstFailure, cases not started when one
// fails are skipped. The Result's status is that of the build (ok once the
// program compiled); Result.Tests sums the cases up.
func (e *Executor) ExecuteTests(ctx context.Context, job Job, b Batch, workers int, report func(wire.TestVerdict)) wire.Result {
	return e.ExecuteTestsBorrowing(ctx, job, b, workers, fixedSlots(workers-1), report)
}

// Borrow takes one more slot for a case without waiting, or reports false;
// release gives it back.
type Borrow func() (release func(), ok bool)

// fixedSlots lends n slots, kept for the batch alone.
func fixedSlots(n int) Borrow {
	sem := make(chan struct{}, max(n, 0))
	return func() (func(), bool) {
		select {
		case sem <- struct{}{}:
			return func() { <-sem }, true
		default:
			return nil, false
		}
	}
}

// ExecuteTestsBorrowing is ExecuteTests on the job's own slot and, for
// each further case at once (up to workers in all), a slot taken from
// borrow for that case only: a job waiting for one of the slave's slots
// gets the next a case gives back, instead of waiting for the whole
// batch while its deadline runs (TestBatchLendsSlotsBack).
func (e *Executor) ExecuteTestsBorrowing(ctx context.Context, job Job, b Batch, workers int, borrow Borrow, report func(wire.TestVerdict)) wire.Result {
	res := wire.Result{JobID: job.ID, Attempt: job.Attempt, Slave: e.cfg.Name, Language: job.Language}
	res.Tests = &wire.TestSummary{Total: len(b.Cases)}
	prog, cleanup, res := e.prepare(ctx, job, res)
	defer cleanup()
	if prog == nil {
		return res
	}
	bt := &batchRun{e: e, ctx: ctx, b: b, prog: prog, report: report}
	if b.Spec.Compare == wire.CompareChecker {
		ch, chCleanup, chRes := e.prepare(ctx, Job{ID: job.ID + "-checker", Language: b.Spec.CheckerLanguage,
			FileName: b.Spec.CheckerFile, Source: b.Checker, Owner: job.Owner,
			Limits: wire.JobLimits{TimeMs: checkerWall.Milliseconds(), MemoryBytes: checkerMemory, OutputBytes: checkerOutput}}, wire.Result{})
		defer chCleanup()
		if ch == nil {
			// The program built: the batch's status is ok, its summary's
			// judge_error. It had none, which the master takes for a
			// slave inventing statuses: a checker that does not compile
			// struck honest slaves (TestBrokenCheckerIsNoSlaveFault).
			res.Status = wire.StatusOK
			res.Tests.Status = wire.TestJudgeError
			res.Detail = fmt.Sprintf("checker %s: %s: %s", b.Spec.CheckerFile, chRes.Status, chRes.Detail)
			if len(chRes.CompileOutput) > 0 {
				res.Detail += "\n" + string(chRes.CompileOutput[:min(len(chRes.CompileOutput), 2048)])
			}
			return res
		}
		bt.checker = ch
	}
	// A build over what a batch holds in memory is the client's doing
	// (three lines of C build to 64 MiB), not the slave's: as the slave's
	// fault it had the master strike honest slaves (TestBigBuildIsNoSlaveFault).
	var err error
	if bt.progFiles, err = dirFiles(bt.prog); errors.Is(err, errOverCap) {
		return fail(res, wire.StatusCompileError, fmt.Sprintf("the compiled program is over %d bytes", maxArtifactBytes))
	}
	if err == nil && bt.checker != nil {
		if bt.checkerFiles, err = dirFiles(bt.checker); errors.Is(err, errOverCap) {
			res.Status, res.Tests.Status = wire.StatusOK, wire.TestJudgeError
			res.Detail = fmt.Sprintf("checker %s: the compiled checker is over %d bytes", b.Spec.CheckerFile, maxArtifactBytes)
			return res
		}
	}
	if err != nil {
		return e.internal(res, "read the compiled program", err)
	}
	bt.run(max(workers, 1), borrow)
	if ctx.Err() != nil {
		return fail(res, wire.StatusCancelled, "cancelled")
	}
	res.Status = wire.StatusOK
	res.Tests = bt.summary()
	return res
}

// prepare checks job, writes its source in a fresh directory and builds
// it. It returns the jobRun ready to run, or nil and the Result that ends
// the job; cleanup removes the directory.
func (e *Executor) prepare(ctx context.Context, job Job, res wire.Result) (*jobRun, func(), wire.Result) {
	none := func() {}
	lang, tc := e.langs[job.Language], e.tools[job.Language]
	if lang == nil || tc.Path == "" {
		res = fail(res, wire.StatusInternalError, fmt.Sprintf("no toolchain for language %q on this slave", job.Language))
		res.SlaveFault = true
		return nil, none, res
	}
	res.Compiler = tc.Compiler
	lim, err := e.Limits(job.Language, job.Limits)
	if err != nil {
		return nil, none, fail(res, wire.StatusInternalError, err.Error())
	}
	job.Limits = lim
	src, err := lang.sourceName(job.FileName)
	if err != nil {
		res.CompileOutput = []byte(err.Error() + "\n")
		return nil, none, fail(res, wire.StatusCompileError, err.Error())
	}
	dir, err := os.MkdirTemp(e.root, "job-")
	if err != nil {
		return nil, none, e.internal(res, "make job dir", err)
	}
	cleanup := func() {
		if err := removeTree(dir); err != nil {
			e.log.Warn("job dir left behind", "dir", dir, "err", err)
		}
	}
	if err := writeNew(dir, src, job.Source, 0o600); err != nil {
		cleanup()
		return nil, none, e.internal(res, "write source", err)
	}
	j := &jobRun{e: e, ctx: ctx, job: job, lang: lang, tc: tc, dir: dir, src: src, res: res}
	if lang.compiled() && j.build() {
		cleanup()
		return nil, none, j.res
	}
	return j, cleanup, j.res
}

// batchRun is the state of one ExecuteTests call.
type batchRun struct {
	e       *Executor
	ctx     context.Context
	b       Batch
	prog    *jobRun
	checker *jobRun // nil unless the batch has a checker
	report  func(wire.TestVerdict)

	progFiles, checkerFiles []Artifact // copied into each case's directory

	failed   atomic.Bool
	mu       sync.Mutex // guards verdicts and serialises report
	verdicts map[int]wire.TestVerdict
}

// dirFiles reads j's source and artifacts: what each case's directory
// starts with.
func dirFiles(j *jobRun) ([]Artifact, error) {
	var out []Artifact
	names := append([]string{j.src}, j.artifacts()...)
	for _, n := range names {
		data, mode, err := readRegular(filepath.Join(j.dir, n), maxArtifactBytes)
		if err != nil {
			return nil, err
		}
		out = append(out, Artifact{Name: n, Mode: mode, Data: data})
	}
	return out, nil
}

// run judges the cases on workers goroutines: the first on the job's own
// slot, each other on a slot borrowed for one case at a time; one that
// cannot borrow stops.
func (bt *batchRun) run(workers int, borrow Borrow) {
	bt.verdicts = make(map[int]wire.TestVerdict, len(bt.b.Cases))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := range min(workers, len(bt.b.Cases)) {
		wg.Go(func() {
			for {
				release := func() {}
				if w > 0 {
					r, ok := borrow()
					if !ok {
						return
					}
					release = r
				}
				i, more := <-next
				if more {
					bt.judgeCase(i)
				}
				release()
				if !more {
					return
				}
			}
		})
	}
	for i := range bt.b.Cases {
		next <- i
	}
	close(next)
	wg.Wait()
}

// judgeCase judges case i, unless the batch is over, and reports it.
func (bt *batchRun) judgeCase(i int) {
	if bt.ctx.Err() != nil || bt.b.Spec.StopOnFirstFailure && bt.failed.Load() {
		return
	}
	v := bt.judge(i)
	if bt.ctx.Err() != nil {
		return
	}
	if v.Status != wire.TestAccepted {
		bt.failed.Store(true)
	}
	bt.mu.Lock()
	bt.verdicts[i] = v
	bt.report(v)
	bt.mu.Unlock()
}

// judge runs case i and judges its output.
func (bt *batchRun) judge(i int) wire.TestVerdict {
	v := wire.TestVerdict{Index: i}
	lim := bt.prog.job.Limits
	if len(bt.b.Spec.Limits) > 0 {
		// A case's own limits are capped at the job's, which the master
		// admitted and sized the job's deadline by.
		l := orLimits(bt.b.Spec.Limits[i], lim)
		lim = wire.JobLimits{TimeMs: min(l.TimeMs, lim.TimeMs), MemoryBytes: min(l.MemoryBytes, lim.MemoryBytes),
			OutputBytes: min(l.OutputBytes, lim.OutputBytes)}
	}
	c := bt.b.Cases[i]
	out, o, err := bt.runIn(bt.prog, bt.progFiles, nil, lim, c.Stdin)
	v.ExitCode, v.Signal = o.ExitCode, o.Signal
	v.WallMs, v.CPUMs, v.MemoryKiB = o.Wall.Milliseconds(), o.CPU.Milliseconds(), o.PeakMemoryKiB
	switch {
	case err != nil:
		v.Status, v.Detail = wire.TestJudgeError, "run: "+err.Error()
	case o.OutputExceeded:
		v.Status, v.Detail = wire.TestOutputLimit, fmt.Sprintf("output over %d bytes", lim.OutputBytes)
	case o.TimedOut:
		v.Status, v.Detail = wire.TestTimeLimit, fmt.Sprintf("time limit of %v exceeded", time.Duration(lim.TimeMs)*time.Millisecond)
	case o.ExitCode != 0 || o.Signal != 0:
		v.Status, v.Detail = wire.TestRuntimeError, describeExit(o)
		if o.MemoryExceeded || memoryFailure(bt.prog.lang, out.stderr.Bytes()) {
			v.Status = wire.TestMemoryLimit
			v.Detail = fmt.Sprintf("memory limit of %d MiB exceeded (%s)", lim.MemoryBytes>>20, describeExit(o))
		}
	default:
		v.Status, v.Detail = bt.verdict(c, out.stdout.Bytes(), lim)
	}
	if v.Status != wire.TestAccepted {
		b := out.stdout.Bytes()
		v.Output = b[:min(len(b), wire.MaxTestExcerpt)]
	}
	return v
}

// verdict compares the output of a case that ran to its end.
func (bt *batchRun) verdict(c wire.TestCase, actual []byte, caseLim wire.JobLimits) (string, string) {
	s := bt.b.Spec
	if bt.checker == nil {
		if ok, why := compareOutput(s.Compare, c.Expected, actual, s.RelTol, s.AbsTol); !ok {
			return wire.TestWrongAnswer, why
		}
		return wire.TestAccepted, ""
	}
	files := append(bt.checkerFiles[:len(bt.checkerFiles):len(bt.checkerFiles)],
		Artifact{Name: "input.txt", Mode: 0o600, Data: c.Stdin},
		Artifact{Name: "expected.txt", Mode: 0o600, Data: c.Expected},
		Artifact{Name: "output.txt", Mode: 0o600, Data: actual})
	lim := bt.checker.job.Limits
	wall := min(max(2*time.Duration(caseLim.TimeMs)*time.Millisecond, time.Second), checkerWall)
	lim.TimeMs = wall.Milliseconds()
	out, o, err := bt.runIn(bt.checker, files, []string{"input.txt", "expected.txt", "output.txt"}, lim, actual)
	msg := bytes.TrimSpace(append(out.stdout.Bytes(), out.stderr.Bytes()...))
	msg = msg[:min(len(msg), wire.MaxTestExcerpt)]
	switch {
	case err != nil:
		return wire.TestJudgeError, "checker: " + err.Error()
	case o.TimedOut:
		return wire.TestJudgeError, fmt.Sprintf("checker ran over its time limit of %v", wall)
	case o.OutputExceeded:
		return wire.TestJudgeError, fmt.Sprintf("checker wrote over %d bytes", checkerOutput)
	case o.Signal == 0 && o.ExitCode == checkerAccepted:
		return wire.TestAccepted, string(msg)
	case o.Signal == 0 && o.ExitCode == checkerWrong:
		return wire.TestWrongAnswer, string(msg)
	}
	return wire.TestJudgeError, fmt.Sprintf("checker failed (%s; want exit 42 accepted or 43 wrong answer): %s", describeExit(o), msg)
}

// caseOutput is what one run wrote.
type caseOutput struct {
	stdout, stderr *cappedBuffer
}

// runIn runs j's run command (with extra arguments) in a fresh directory
// holding files, under lim, with stdin.
func (bt *batchRun) runIn(j *jobRun, files []Artifact, extra []string, lim wire.JobLimits, stdin []byte) (caseOutput, sandbox.Outcome, error) {
	out := caseOutput{stdout: &cappedBuffer{max: int(lim.OutputBytes)}, stderr: &cappedBuffer{max: stderrTailBytes}}
	sf := make([]sandbox.File, len(files))
	for i, f := range files {
		sf[i] = sandbox.File{Name: f.Name, Mode: f.Mode.Perm()&0o700 | 0o600, Data: f.Data}
	}
	cj := *j
	cj.dir = ""
	if !bt.e.inMemory() {
		dir, cleanup, err := bt.e.jobDir(sf)
		if err != nil {
			return out, sandbox.Outcome{}, err
		}
		defer cleanup()
		cj.dir, sf = dir, nil
	}
	spec := cj.runSpec(lim)
	spec.Files = sf
	spec.Argv = append(spec.Argv, extra...)
	spec.Stdin, spec.Stdout, spec.Stderr = bytes.NewReader(stdin), out.stdout, out.stderr
	o, err := bt.e.cfg.Runner.Run(bt.ctx, spec)
	return out, o, err
}

// summary sums the verdicts up.
func (bt *batchRun) summary() *wire.TestSummary {
	s := &wire.TestSummary{Total: len(bt.b.Cases), Ran: len(bt.verdicts), Status: wire.TestAccepted}
	first := -1
	for i := range bt.b.Cases {
		v, ok := bt.verdicts[i]
		if !ok {
			continue
		}
		s.WorstWallMs, s.WorstCPUMs = max(s.WorstWallMs, v.WallMs), max(s.WorstCPUMs, v.CPUMs)
		s.WorstMemoryKiB = max(s.WorstMemoryKiB, v.MemoryKiB)
		switch {
		case v.Status == wire.TestAccepted:
			s.Passed++
		case v.Status == wire.TestJudgeError && s.Status != wire.TestJudgeError:
			s.Status, first = v.Status, i
		case first < 0:
			s.Status, first = v.Status, i
		}
	}
	if s.Status == wire.TestAccepted && s.Ran < s.Total {
		s.Status = wire.TestSkipped
	}
	return s
}
