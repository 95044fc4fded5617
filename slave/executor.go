package slave

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"kiln/limits"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// Caps of the compile step and of what the executor keeps.
const (
	maxCompileOutput = 64 << 10 // bytes of compiler output in Result.CompileOutput
	stderrTailBytes  = 8 << 10  // stderr tail kept to recognise memory failures
	compileWall      = 60 * time.Second
	compileMemory    = 2 << 30
)

// ExecConfig configures an [Executor].
type ExecConfig struct {
	Name string // slave name written into results
	// WorkRoot is where job directories go when no private tmpfs can be
	// made (see WorkBytes): a fresh directory per job is made, and removed,
	// under it; leftovers of a killed slave ("job-*") are removed at start,
	// so a work root belongs to one slave.
	WorkRoot string
	// WorkBytes caps the private tmpfs (sandbox.PrivateDir) that holds the
	// job directories, so that no job's files are ever at rest on a disk
	// and none survive the slave, even a SIGKILLed one. Zero means
	// JobDirBytes for each of Slots, at most MaxWorkBytes (also the most
	// it may be set to); negative keeps job directories under WorkRoot.
	// A job whose directory meets a full tmpfs ends as its own failure
	// (compile_error), never the slave's.
	WorkBytes int64
	// Slots is how many jobs the slave runs at once (Config.Slots);
	// default runtime.NumCPU().
	Slots int
	// JobDirBytes is what one slot's job directories can hold; default
	// DefaultJobDirBytes.
	JobDirBytes int64
	Runner      sandbox.Runner   // runs the compile and run steps
	Toolchains  []wire.Toolchain // what this slave can run (see [Detect], [DetectLanguages])
	// Languages are the descriptors of the languages; nil means the
	// built-in table ([BuiltinLanguages]). A toolchain of a language
	// not among them is ignored. A descriptor's limits are this slave's
	// bounds for its language where Limits has no override for it.
	Languages []LanguageSpec
	Cache     *Cache // compile cache; nil disables it
	// SharedCache lets a job of one client use the compile cache entries of
	// another's. By default entries are kept per owner (Job.Owner): with a
	// shared cache, "cached: true" tells a client that someone compiled the
	// same file before (an oracle on other clients' sources).
	SharedCache bool
	// Limits is this slave's own bounds on a job's limits: its defaults
	// fill what an assignment leaves zero, and a job asking for more than
	// its maxima fails rather than run under other limits than assigned.
	// The zero Policy is limits' built-in one.
	Limits limits.Policy
	Logger *slog.Logger
}

// Job is one program to compile and run.
type Job struct {
	ID       string
	Attempt  int
	Language string
	FileName string
	Source   []byte
	Stdin    []byte
	Limits   wire.JobLimits
	Owner    string   // the submitting client's key fingerprint (wire.Assign.Owner)
	Options  []string // compiler options among those the language allows
}

// Executor compiles and runs jobs in per-job directories through a
// sandbox runner. It is safe for concurrent use; it holds no goroutines.
// Close releases its private tmpfs once no job runs.
type Executor struct {
	cfg   ExecConfig
	tools map[string]wire.Toolchain
	langs map[string]*language
	// langLimits are the bounds of languages whose descriptor sets limits.
	langLimits map[string]limits.Policy
	log        *slog.Logger
	private    *sandbox.PrivateDir // nil: job directories under cfg.WorkRoot
	root       string              // where job directories are made
	workBytes  int64               // the private tmpfs's size

	mu      sync.Mutex
	closed  bool           // set by Close: no new job
	running sync.WaitGroup // Execute calls in progress

	// trace, set by the per-step benchmarks only, is told how long each
	// step of Execute took.
	trace func(step string, d time.Duration)
}

// NewExecutor checks cfg, sweeps the work root and makes the private tmpfs
// for job directories (falling back to the work root, with a warning, where
// it cannot).
func NewExecutor(cfg ExecConfig) (*Executor, error) {
	if cfg.Runner == nil || cfg.WorkRoot == "" {
		return nil, errors.New("slave: executor needs a Runner and a WorkRoot")
	}
	if err := os.MkdirAll(cfg.WorkRoot, 0o700); err != nil {
		return nil, fmt.Errorf("slave: work root: %w", err)
	}
	langs, policies, err := checkLanguages(cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.Limits.Check(); err != nil {
		return nil, fmt.Errorf("slave: job limits: %w", err)
	}
	if cfg.Slots == 0 {
		cfg.Slots = runtime.NumCPU()
	}
	size, err := workBytes(cfg)
	if err != nil {
		return nil, err
	}
	e := &Executor{cfg: cfg, tools: map[string]wire.Toolchain{}, langs: langs, langLimits: policies, log: cfg.Logger, root: cfg.WorkRoot}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.sweep()
	// Plain runs programs in the job directory itself, where a directory
	// reachable only through /proc/self/fd is no working directory.
	if cfg.WorkBytes >= 0 && cfg.Runner.Name() != "none" {
		pd, err := sandbox.NewPrivateDir(size)
		if err != nil {
			e.log.Warn("job directories on disk: no private tmpfs for them (needs root)", "work_root", cfg.WorkRoot, "err", err)
		} else {
			e.private, e.root, e.workBytes = pd, pd.Path(), size
		}
	}
	var tcs []wire.Toolchain
	for _, tc := range cfg.Toolchains {
		if l := e.langs[tc.Language]; l != nil {
			tc.Extensions, tc.Options, tc.Hash = l.spec.Extensions, l.spec.allowedOptions(), l.hash
			e.tools[tc.Language] = tc
			tcs = append(tcs, tc)
		}
	}
	e.cfg.Toolchains = tcs
	return e, nil
}

// sweep removes job directories a killed slave left in the work root.
func (e *Executor) sweep() {
	left, _ := filepath.Glob(filepath.Join(e.cfg.WorkRoot, "job-*"))
	for _, d := range left {
		if err := removeTree(d); err != nil {
			e.log.Warn("job dir of an earlier run left behind", "dir", d, "err", err)
		}
	}
}

// Private reports whether job directories are on the private tmpfs.
func (e *Executor) Private() bool { return e.private != nil }

// Close releases the private tmpfs and everything in it once every
// Execute in progress has returned (a job directory path resolved after
// the tmpfs is gone could name whatever reuses its descriptor number);
// later calls of Execute fail. It is idempotent.
func (e *Executor) Close() error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.running.Wait()
	return e.private.Close()
}

// enter registers an Execute call; it reports false after Close.
func (e *Executor) enter() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.running.Add(1)
	return true
}

// Toolchains returns the toolchains the executor runs.
func (e *Executor) Toolchains() []wire.Toolchain { return slices.Clone(e.cfg.Toolchains) }

// Sandbox returns the runner's name, "none" or "strict".
func (e *Executor) Sandbox() string { return e.cfg.Runner.Name() }

// Limits returns the limits a job of lang asking for l runs under, or an
// error when l is over this slave's maxima (see ExecConfig.Limits).
func (e *Executor) Limits(lang string, l wire.JobLimits) (wire.JobLimits, error) {
	p, own := e.langLimits[lang]
	if !own {
		p = e.cfg.Limits
	}
	lim, err := p.Apply(lang, l)
	if err != nil {
		return lim, fmt.Errorf("over this slave's own bounds: %w", err)
	}
	return lim, nil
}

// Execute compiles and runs job. Program output goes to emit as it is
// produced (stream wire.StreamStdout or wire.StreamStderr; emit owns data
// and is never called concurrently); compiler output goes into the result.
// When ctx ends, the job is killed and the status is cancelled.
func (e *Executor) Execute(ctx context.Context, job Job, emit func(stream uint8, data []byte)) wire.Result {
	res := wire.Result{JobID: job.ID, Attempt: job.Attempt, Slave: e.cfg.Name, Language: job.Language}
	lang, tc := e.langs[job.Language], e.tools[job.Language]
	if lang == nil || tc.Path == "" {
		res = fail(res, wire.StatusInternalError, fmt.Sprintf("no toolchain for language %q on this slave", job.Language))
		res.SlaveFault = true
		return res
	}
	res.Compiler = tc.Compiler
	if !e.enter() {
		res = fail(res, wire.StatusInternalError, "the slave is shutting down")
		res.SlaveFault = true
		return res
	}
	defer e.running.Done()
	lim, err := e.Limits(job.Language, job.Limits)
	if err != nil {
		return fail(res, wire.StatusInternalError, err.Error())
	}
	job.Limits = lim
	src, err := lang.sourceName(job.FileName)
	if err != nil {
		res.CompileOutput = []byte(err.Error() + "\n")
		return fail(res, wire.StatusCompileError, err.Error())
	}
	clk := sandbox.StepClock{Trace: e.trace}
	clk.Start()
	defer clk.Mark("result")
	j := &jobRun{e: e, ctx: ctx, job: job, lang: lang, tc: tc, src: src, res: res, clk: &clk}
	return j.execute(emit)
}

// inMemory reports whether the runner takes a job's files from memory
// (sandbox.Spec.Files) instead of a job directory: the strict runner
// writes them straight into the job's private /w, so a run needs no job
// directory on the slave, no copy of the cached program into one, and no
// removal. Plain runs the program in the job directory itself.
func (e *Executor) inMemory() bool { return e.cfg.Runner.Name() != "none" }

// jobDir makes a fresh job directory holding files; cleanup removes it.
func (e *Executor) jobDir(files []sandbox.File) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp(e.root, "job-")
	if err != nil {
		return "", nil, fmt.Errorf("make job dir: %w", err)
	}
	cleanup = func() {
		if err := removeTree(dir); err != nil {
			e.log.Warn("job dir left behind", "dir", dir, "err", err)
		}
	}
	for _, f := range files {
		if err := writeNew(dir, f.Name, f.Data, f.Mode.Perm()&0o700|0o600); err != nil {
			cleanup()
			return "", nil, fmt.Errorf("write %s: %w", f.Name, err)
		}
	}
	return dir, cleanup, nil
}

// jobRun is the state of one Execute call.
type jobRun struct {
	e    *Executor
	ctx  context.Context
	job  Job
	lang *language
	tc   wire.Toolchain
	dir  string
	src  string
	res  wire.Result
	clk  *sandbox.StepClock // nil outside Execute
}

// execute runs the job from memory when the runner allows it and the
// program needs no compiling (an interpreted language, or a build in the
// compile cache); otherwise it compiles in a job directory and runs there.
func (j *jobRun) execute(emit func(uint8, []byte)) wire.Result {
	var arts []Artifact
	if j.lang.compiled() {
		argv, key, done := j.compileKey()
		if done {
			return j.res
		}
		var hit bool
		if arts, hit = j.cached(key); !hit {
			return j.compileAndRun(argv, key, emit)
		}
	}
	files := make([]sandbox.File, 0, 1+len(arts))
	files = append(files, sandbox.File{Name: j.src, Mode: 0o600, Data: j.job.Source})
	for _, a := range arts {
		if !safeBaseName(a.Name) {
			return j.e.internal(j.res, "place cached build", fmt.Errorf("cached artifact %q: %w", a.Name, ErrBadFileName))
		}
		files = append(files, sandbox.File{Name: a.Name, Mode: a.Mode.Perm()&0o700 | 0o600, Data: a.Data})
	}
	if j.e.inMemory() {
		return j.run(files, emit)
	}
	dir, cleanup, err := j.e.jobDir(files)
	if err != nil {
		return j.e.internal(j.res, "job dir", err)
	}
	defer cleanup()
	j.dir = dir
	return j.run(nil, emit)
}

// compileAndRun compiles in a fresh job directory, stores the build in
// the cache, and runs it there.
func (j *jobRun) compileAndRun(argv []string, key string, emit func(uint8, []byte)) wire.Result {
	dir, cleanup, err := j.e.jobDir([]sandbox.File{{Name: j.src, Mode: 0o600, Data: j.job.Source}})
	if err != nil {
		return j.e.internal(j.res, "job dir", err)
	}
	defer cleanup()
	j.dir = dir
	if j.compile(argv, key) {
		return j.res
	}
	return j.run(nil, emit)
}

// build puts the compiled program into the job directory, from the cache
// or by compiling. It reports true when the job ends here.
func (j *jobRun) build() bool {
	argv, key, done := j.compileKey()
	if done {
		return true
	}
	if arts, ok := j.cached(key); ok {
		if err := j.place(arts); err != nil {
			j.res = j.e.internal(j.res, "place cached build", err)
			return true
		}
		return false
	}
	return j.compile(argv, key)
}

// compileKey returns the compile command and the cache key of the build.
// It reports true when the job ends here (options refused).
func (j *jobRun) compileKey() (argv []string, key string, done bool) {
	argv, err := j.lang.compile(j.tc.Path, j.src, j.job.Options)
	if err != nil {
		j.res.CompileOutput = []byte(err.Error() + "\n")
		j.res = fail(j.res, wire.StatusCompileError, err.Error())
		return nil, "", true
	}
	flags := argv[1:]
	javaName := ""
	if j.lang.spec.Source.ClassName {
		javaName = j.src
	}
	owner := j.job.Owner
	if j.e.cfg.SharedCache {
		owner = ""
	}
	// The descriptor's hash is part of the key: a changed command line or
	// option set never reuses a build made under the old one.
	return argv, CacheKey(owner, j.lang.name+"\x00"+j.lang.hash, j.tc.Compiler, flags, javaName, j.job.Source), false
}

// cached returns the build stored under key, if any, and marks the
// result cached. The artifacts' data is the cache's: read it only.
func (j *jobRun) cached(key string) ([]Artifact, bool) {
	c := j.e.cfg.Cache
	if c == nil {
		return nil, false
	}
	arts, ok := c.Get(key)
	j.clk.Mark("cache-get")
	j.res.Cached = ok
	return arts, ok
}

// compile runs the compile step in the job directory and stores the
// build in the cache. It reports true when the job ends here.
func (j *jobRun) compile(argv []string, key string) bool {
	out := &cappedBuffer{max: maxCompileOutput}
	wall, mem := compileWall, int64(compileMemory)
	if ms := j.lang.spec.Sandbox.CompileTimeMs; ms > 0 {
		wall = min(wall, time.Duration(ms)*time.Millisecond)
	}
	if b := j.lang.spec.Sandbox.CompileMemoryBytes; b > 0 {
		mem = min(mem, b)
	}
	spec := j.spec(argv, sandbox.Limits{
		Wall: wall, CPU: wall, MemoryBytes: mem, OutputBytes: 4 << 20,
		FileBytes: 512 << 20, OpenFiles: 256, Procs: j.lang.spec.Sandbox.CompileProcs, NoAddressSpaceLimit: j.lang.jvm(),
	})
	spec.Stdout, spec.Stderr = out, out
	spec.Keep = j.keepArtifact
	o, err := j.e.cfg.Runner.Run(j.ctx, spec)
	j.res.CompileOutput = out.Bytes()
	switch {
	case j.ctx.Err() != nil:
		j.res = fail(j.res, wire.StatusCancelled, "cancelled while compiling")
		return true
	case err != nil:
		j.res = j.e.internal(j.res, "compile", err)
		return true
	case o.TimedOut:
		j.res = fail(j.res, wire.StatusCompileError, fmt.Sprintf("compilation took longer than %v", wall))
		return true
	case o.ExitCode != 0 || o.Signal != 0:
		j.res = fail(j.res, wire.StatusCompileError, describeExit(o))
		return true
	case len(o.NotKept) > 0 || len(j.artifacts()) == 0:
		// The compiler's output is bounded like any job's; what it made
		// past the bounds is the source's doing.
		why := "the compiler produced no program"
		if len(o.NotKept) > 0 {
			why = "compiler output not kept: " + strings.Join(o.NotKept[:min(len(o.NotKept), 3)], "; ")
		}
		j.res.CompileOutput = append(j.res.CompileOutput, why+"\n"...)
		j.res = fail(j.res, wire.StatusCompileError, why)
		return true
	}
	j.store(key)
	return false
}

// keepArtifact selects the compile outputs copied back from the sandbox:
// the language's artifacts at the top of the job directory, nothing else.
func (j *jobRun) keepArtifact(name string) bool {
	return !strings.Contains(name, "/") && slices.Contains(j.lang.artifacts([]string{name}), name)
}

// artifacts lists the compile outputs in the job directory.
func (j *jobRun) artifacts() []string {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return slices.DeleteFunc(j.lang.artifacts(names), func(n string) bool { return !slices.Contains(names, n) })
}

// store copies the compile outputs into the cache, refusing anything that
// is not a regular file.
func (j *jobRun) store(key string) {
	c := j.e.cfg.Cache
	if c == nil {
		return
	}
	var arts []Artifact
	for _, name := range j.artifacts() {
		data, mode, err := readRegular(filepath.Join(j.dir, name), maxArtifactBytes)
		if err != nil {
			j.e.log.Warn("compile output not cached", "job", j.job.ID, "err", err)
			return
		}
		arts = append(arts, Artifact{Name: name, Mode: mode, Data: data})
	}
	if err := c.Put(key, arts); err != nil {
		j.e.log.Warn("compile cache put", "job", j.job.ID, "err", err)
	}
}

// place writes cached artifacts into the job directory.
func (j *jobRun) place(arts []Artifact) error {
	for _, a := range arts {
		if !safeBaseName(a.Name) {
			return fmt.Errorf("cached artifact %q: %w", a.Name, ErrBadFileName)
		}
		if err := writeNew(j.dir, a.Name, a.Data, a.Mode.Perm()&0o700|0o600); err != nil {
			return err
		}
	}
	return nil
}

// run runs the program, in the job directory or, when files are given,
// in a work directory made of them (see Executor.inMemory).
func (j *jobRun) run(files []sandbox.File, emit func(uint8, []byte)) wire.Result {
	lim := j.job.Limits // applied in Execute
	spec := j.runSpec(lim)
	spec.Files = files
	wall := spec.Limits.Wall
	var mu sync.Mutex // emit is never called concurrently
	tail := &tailBuffer{max: stderrTailBytes}
	spec.Stdin = bytes.NewReader(j.job.Stdin)
	spec.Stdout = emitWriter(&mu, wire.StreamStdout, emit, nil)
	spec.Stderr = emitWriter(&mu, wire.StreamStderr, emit, tail)
	j.clk.Mark("spec")
	o, err := j.e.cfg.Runner.Run(j.ctx, spec)
	j.clk.Mark("sandbox")
	res := j.res
	res.WallMs, res.CPUMs, res.MemoryKiB = o.Wall.Milliseconds(), o.CPU.Milliseconds(), o.PeakMemoryKiB
	res.ExitCode, res.Signal = o.ExitCode, o.Signal
	res.StdoutBytes, res.StderrBytes = o.StdoutBytes, o.StderrBytes
	switch {
	case j.ctx.Err() != nil:
		return fail(res, wire.StatusCancelled, "cancelled")
	case errors.Is(err, sandbox.ErrStart):
		// The request's fault (see sandbox.ErrStart): a client's build
		// the kernel will not execute was the slave's, and struck it
		// (TestUnstartableProgramIsNoSlaveFault).
		return fail(res, wire.StatusRuntimeError, err.Error())
	case err != nil:
		return j.e.internal(res, "run", err)
	case o.OutputExceeded:
		return fail(res, wire.StatusOutputLimit, fmt.Sprintf("output over %d bytes", lim.OutputBytes))
	case o.TimedOut:
		return fail(res, wire.StatusTimeLimit, fmt.Sprintf("time limit of %v exceeded", wall))
	case o.ExitCode == 0 && o.Signal == 0:
		res.Status = wire.StatusOK
		return res
	case o.MemoryExceeded || memoryFailure(j.lang, tail.Bytes()):
		return fail(res, wire.StatusMemoryLimit, fmt.Sprintf("memory limit of %d MiB exceeded (%s)", lim.MemoryBytes>>20, describeExit(o)))
	}
	return fail(res, wire.StatusRuntimeError, describeExit(o))
}

// runSpec is the sandbox spec of a run of the program under lim.
func (j *jobRun) runSpec(lim wire.JobLimits) sandbox.Spec {
	procs := 256
	if p := j.lang.spec.Sandbox.Procs; p > 0 {
		procs = p
	}
	wall := time.Duration(lim.TimeMs) * time.Millisecond
	return j.spec(j.lang.run(j.tc.Path, j.src, lim.MemoryBytes), sandbox.Limits{
		Wall: wall, CPU: wall, MemoryBytes: lim.MemoryBytes, OutputBytes: lim.OutputBytes,
		FileBytes: 64 << 20, OpenFiles: 64, Procs: procs, NoAddressSpaceLimit: j.lang.jvm(),
	})
}

// spec builds a sandbox spec in the job directory with a minimal
// environment, plus the language's own variables.
func (j *jobRun) spec(argv []string, lim sandbox.Limits) sandbox.Spec {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "LC_ALL=C.UTF-8"}
	return sandbox.Spec{
		Argv: argv,
		// No host paths: a strict runner shows Dir elsewhere inside.
		Env:    append(env, j.lang.spec.Env...),
		Dir:    j.dir,
		Limits: lim,
	}
}

// memoryFailure recognises an allocation failure from the tail of stderr.
// This is a heuristic for runners that cannot see memory events (Plain):
// a C program whose malloc fails under RLIMIT_AS usually just crashes and
// is reported as a runtime error.
func memoryFailure(lang *language, stderrTail []byte) bool {
	pats := append(slices.Clip(lang.spec.MemoryErrors), "Cannot allocate memory", "out of memory")
	for _, p := range pats {
		if bytes.Contains(stderrTail, []byte(p)) {
			return true
		}
	}
	return false
}

func describeExit(o sandbox.Outcome) string {
	if o.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%v)", o.Signal, syscall.Signal(o.Signal))
	}
	return fmt.Sprintf("exit code %d", o.ExitCode)
}

func fail(res wire.Result, status, detail string) wire.Result {
	res.Status, res.Detail = status, detail
	return res
}

// jobDirsFull reports whether err is the job directories' private tmpfs
// out of room: ENOSPC while it has less than one slot's job directories
// (JobDirBytes) left. ENOSPC from elsewhere (a kernel limit on mount
// namespaces, say) with room left is the slave's own failure.
func (e *Executor) jobDirsFull(err error) bool {
	if e.private == nil || !errors.Is(err, syscall.ENOSPC) {
		return false
	}
	var st unix.Statfs_t
	if unix.Statfs(e.root, &st) != nil {
		return false
	}
	return int64(st.Bavail)*int64(st.Bsize) < cmp.Or(e.cfg.JobDirBytes, DefaultJobDirBytes)
}

func (e *Executor) internal(res wire.Result, op string, err error) wire.Result {
	if e.jobDirsFull(err) {
		// The private tmpfs holds job directories only: jobs filled it,
		// not the slave. Struck against the slave, one client's big
		// builds at once had an honest slave quarantined
		// (TestFullJobDirsAreNoSlaveFault).
		why := fmt.Sprintf("%s: the slave's job directories are full (%d bytes for all its jobs): the build did not fit", op, e.workBytes)
		e.log.Warn("job directories full", "job", res.JobID, "op", op, "err", err)
		res.CompileOutput = append(res.CompileOutput, why+"\n"...)
		return fail(res, wire.StatusCompileError, why)
	}
	e.log.Error("job failed inside the slave", "job", res.JobID, "op", op, "err", err)
	res = fail(res, wire.StatusInternalError, op+": "+err.Error())
	res.SlaveFault = true // the master runs the job elsewhere and counts it against this slave
	return res
}

// emitWriter adapts emit to an io.Writer, copying each chunk; tail, when
// set, also receives it.
func emitWriter(mu *sync.Mutex, stream uint8, emit func(uint8, []byte), tail *tailBuffer) writerFunc {
	return func(p []byte) (int, error) {
		if tail != nil {
			tail.Write(p)
		}
		if emit != nil && len(p) > 0 {
			mu.Lock()
			emit(stream, bytes.Clone(p))
			mu.Unlock()
		}
		return len(p), nil
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p[:min(len(p), c.max-len(c.buf))]...)
	return len(p), nil
}

func (c *cappedBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
}

func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf)
}

// checkLanguages checks cfg's language descriptors (the built-in table
// when none). A descriptor's limits become the slave's bounds for its
// language where cfg.Limits has no override for it: they fill in from
// the slave's own bounds and never raise its maxima.
func checkLanguages(cfg ExecConfig) (map[string]*language, map[string]limits.Policy, error) {
	specs := cfg.Languages
	if specs == nil {
		specs = BuiltinLanguages()
	}
	langs := make(map[string]*language, len(specs))
	policies := map[string]limits.Policy{}
	base := cfg.Limits.For("")
	for _, s := range specs {
		if err := s.check(); err != nil {
			return nil, nil, fmt.Errorf("slave: language %q: %w", s.Name, err)
		}
		langs[s.Name] = newLanguage(s)
		if _, set := cfg.Limits.Languages[s.Name]; set || s.Limits == (LimitsSpec{}) {
			continue
		}
		mx := orLimits(s.Limits.Max.job(), base.Max)
		mx = wire.JobLimits{TimeMs: min(mx.TimeMs, base.Max.TimeMs), MemoryBytes: min(mx.MemoryBytes, base.Max.MemoryBytes),
			OutputBytes: min(mx.OutputBytes, base.Max.OutputBytes)}
		def := orLimits(s.Limits.Default.job(), base.Default)
		def = wire.JobLimits{TimeMs: min(def.TimeMs, mx.TimeMs), MemoryBytes: min(def.MemoryBytes, mx.MemoryBytes),
			OutputBytes: min(def.OutputBytes, mx.OutputBytes)}
		policies[s.Name] = limits.Policy{Bounds: limits.Bounds{Default: def, Max: mx}}
	}
	return langs, policies, nil
}

// orLimits returns l with its zero fields taken from def.
func orLimits(l, def wire.JobLimits) wire.JobLimits {
	return wire.JobLimits{TimeMs: cmp.Or(l.TimeMs, def.TimeMs), MemoryBytes: cmp.Or(l.MemoryBytes, def.MemoryBytes),
		OutputBytes: cmp.Or(l.OutputBytes, def.OutputBytes)}
}
