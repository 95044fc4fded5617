package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"

	"kiln/certs"
	"kiln/client"
	"kiln/limits"
	"kiln/transport"
	"kiln/transport/wire"
)

// Exit codes of `kiln run` (and of the other client commands where they
// apply). When the program ran, `kiln run` exits with its exit code instead.
const (
	exitUsage       = 2   // usage error, or a bad input file
	exitCompile     = 101 // compile error
	exitTimeLimit   = 102 // time limit exceeded
	exitMemoryLimit = 103 // memory limit exceeded
	exitOutputLimit = 104 // output limit exceeded
	exitInternal    = 105 // internal error, or the job was cancelled
	exitRefused     = 110 // the master refused this key
	exitUnreachable = 111 // master unreachable, or connection lost
	exitNoCapacity  = 112 // no slave for the language, or the cluster is busy
	exitInterrupted = 130 // interrupted (Ctrl-C); the job was cancelled
)

const exitCodesHelp = `Exit codes:
  0-255  the program's own exit code when it ran (killed by signal N: 128+N)
  2      usage error or bad input file (unknown extension, empty, too large, unreadable)
  101    compile error (the compiler's output is printed on stderr)
  102    time limit exceeded
  103    memory limit exceeded
  104    output limit exceeded
  105    internal error, or the job was cancelled (also: --timeout expired);
         also sealed output that failed authentication, or a refused key wrap
  110    the master refused this key (unknown, revoked, retired, wrong role or
         wrong port), or the bundle is not a client or admin bundle, or its
         key expired (the message says when and what to do)
  111    master unreachable, or the connection was lost
  112    no connected slave runs this language (or every one that does is
         drained), or the cluster is busy
  130    interrupted with Ctrl-C (the job is cancelled on the cluster)
`

// dialTimeout bounds connecting and saying Hello to the master.
const dialTimeout = 10 * time.Second

// progressThreshold is the upload size above which a progress line is shown
// when stderr is a terminal.
const progressThreshold = 1 << 20

// clientFlags are the flags every client command shares.
type clientFlags struct {
	bundle, master string
	loaded         *certs.Bundle // the bundle dial read
	// quiet: the session wants no progress states (client.Config.Quiet).
	quiet bool
}

func (f *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.bundle, "bundle", "", "client bundle `FILE` (default $KILN_BUNDLE)")
	fs.StringVar(&f.master, "master", "", "master client address `HOST:PORT` (default $KILN_MASTER)")
}

// resolve fills unset flags from the environment and checks them.
func (f *clientFlags) resolve(e env) error {
	if f.bundle == "" {
		f.bundle = e.getenv("KILN_BUNDLE")
	}
	if f.master == "" {
		f.master = e.getenv("KILN_MASTER")
	}
	if f.bundle == "" {
		return errors.New("no bundle: use --bundle FILE or set KILN_BUNDLE")
	}
	if f.master == "" {
		return errors.New("no master: use --master HOST:PORT or set KILN_MASTER")
	}
	if !strings.Contains(f.master, ":") {
		f.master += ":7400"
	}
	return nil
}

// dial reads the bundle and connects to the master. On failure it prints
// the error and returns the exit code.
func (f *clientFlags) dial(ctx context.Context, e env, cmd string) (*client.Client, int) {
	b, err := certs.ReadBundle(f.bundle)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln %s: %v\n", cmd, err)
		return nil, exitUsage
	}
	if err := checkBundle(f.bundle, b, time.Now(), certs.RoleClient, certs.RoleAdmin); err != nil {
		fmt.Fprintf(e.stderr, "kiln %s: %v\n", cmd, err)
		return nil, exitRefused
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	c, err := client.Dial(dctx, client.Config{Bundle: b, Master: f.master, Version: "", Quiet: f.quiet})
	if err != nil {
		if ctx.Err() != nil {
			return nil, interruptedCode(ctx, e, cmd)
		}
		return nil, reportErr(e, cmd, portHint(err, f.master, false))
	}
	f.loaded = b
	return c, 0
}

// exitCodeOf maps an error from the client library to an exit code.
func exitCodeOf(err error) int {
	var refused *transport.RefusedError
	var reqErr *client.RequestError
	var tlsErr *transport.HandshakeError
	var sealErr *client.SealError
	switch {
	case errors.As(err, &sealErr):
		return exitInternal // tampered output, or a key wrap refused
	case errors.As(err, &tlsErr):
		return exitRefused // the master rejected our certificate, or we its
	case errors.As(err, &refused):
		switch refused.Code {
		case wire.CodeBusy:
			return exitNoCapacity
		case wire.CodeShutdown, wire.CodeKicked:
			return exitUnreachable
		}
		return exitRefused
	case errors.As(err, &reqErr):
		switch reqErr.Code {
		case wire.CodeBusy, wire.CodeNoSlave:
			return exitNoCapacity
		case wire.CodeTooLarge, wire.CodeBadRequest:
			return exitUsage
		case wire.CodeForbidden:
			return exitRefused
		}
		return exitInternal
	case errors.Is(err, client.ErrBadInput):
		return exitUsage
	case errors.Is(err, context.DeadlineExceeded):
		return exitInternal
	}
	return exitUnreachable
}

// reportErr prints err for cmd and returns its exit code.
func reportErr(e env, cmd string, err error) int {
	fmt.Fprintf(e.stderr, "kiln %s: %v\n", cmd, err)
	return exitCodeOf(err)
}

// interruptedCode reports an interrupted command.
func interruptedCode(ctx context.Context, e env, cmd string) int {
	if errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		fmt.Fprintf(e.stderr, "kiln %s: timed out\n", cmd)
		return exitInternal
	}
	fmt.Fprintf(e.stderr, "kiln %s: interrupted\n", cmd)
	return exitInterrupted
}

// exitCodeOfResult maps a job's result to the exit code of `kiln run`.
func exitCodeOfResult(r wire.Result) int {
	switch r.Status {
	case wire.StatusOK, wire.StatusRuntimeError:
		if r.Signal > 0 {
			return 128 + r.Signal
		}
		if r.Status == wire.StatusRuntimeError && r.ExitCode == 0 {
			return 1
		}
		return r.ExitCode & 0xff
	case wire.StatusCompileError:
		return exitCompile
	case wire.StatusTimeLimit:
		return exitTimeLimit
	case wire.StatusMemoryLimit:
		return exitMemoryLimit
	case wire.StatusOutputLimit:
		return exitOutputLimit
	case wire.StatusNoSlave:
		return exitNoCapacity
	}
	return exitInternal
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("kiln run hello.c --json") and returns the positional ones.
// Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressLine returns an upload progress callback drawing one line on w.
func progressLine(w io.Writer, name string) func(sent, total int64) {
	last := time.Time{}
	return func(sent, total int64) {
		now := time.Now()
		if sent < total && now.Sub(last) < 100*time.Millisecond {
			return
		}
		last = now
		fmt.Fprintf(w, "\ruploading %s: %s / %s (%d%%)", name, formatSize(sent), formatSize(total), sent*100/max(total, 1))
		if sent >= total {
			fmt.Fprintln(w)
		}
	}
}

// runOptions are the parsed flags of `kiln run`.
type runOptions struct {
	clientFlags
	stdin     string
	pipeStdin bool // read our stdin when it is not a terminal (kiln run, not bench)
	json      bool
	verbose   bool
	noSeal    bool
	noCache   bool // kiln run --no-slave-cache
	timeout   time.Duration
	judge     judgeFlags
	detach    bool // kiln result: an interrupted command leaves the job running
	limits    struct {
		time           time.Duration
		memory, output sizeFlag
	}
}

func runFlags(e env, o *runOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("kiln run", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o.register(fs)
	fs.StringVar(&o.stdin, "stdin", "", "feed `FILE` to the program's standard input; - for this command's own\n(default: this command's standard input when it is a pipe or a file, nothing on a terminal)")
	fs.BoolVar(&o.json, "json", false, "print one JSON object with the result instead of streaming the output")
	fs.BoolVar(&o.verbose, "v", false, "print a summary line (and compiler output) even when the job succeeds")
	fs.BoolVar(&o.noSeal, "no-seal", false, "send the source, stdin and output unsealed (the master can read them)")
	o.judge.register(fs)
	fs.DurationVar(&o.timeout, "timeout", 0, "give up (and cancel the job) after this overall `DURATION` (default none)")
	b := limits.Builtin()
	fs.DurationVar(&o.limits.time, "time-limit", 0, fmt.Sprintf("wall-clock limit of the run step, a `DURATION` such as 5s (default: the master's, built in %s;\nat most the master's maximum, built in %s: more is refused)",
		limits.Format("time", b.Default.TimeMs), limits.Format("time", b.Max.TimeMs)))
	fs.Var(&o.limits.memory, "memory-limit", fmt.Sprintf("memory limit, a `SIZE` such as 256MiB, 1GiB or 512k (default: the master's,\nbuilt in %s; at most the master's maximum, built in %s)", limits.FormatSize(b.Default.MemoryBytes), limits.FormatSize(b.Max.MemoryBytes)))
	fs.Var(&o.limits.output, "output-limit", fmt.Sprintf("cap on stdout plus stderr, a `SIZE` such as 1MiB (default: the master's,\nbuilt in %s; at most the master's maximum, built in %s)", limits.FormatSize(b.Default.OutputBytes), limits.FormatSize(b.Max.OutputBytes)))
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kiln run --bundle FILE --master HOST:PORT [flags] FILE\n\n"+
			"Compiles and runs FILE (.c, .cpp, .cc, .java, .py) on the cluster, streaming its\n"+
			"output to stdout and stderr.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nEvery flag can be set in the environment: KILN_ and its name in capitals, dashes as\nunderscores (KILN_TIME_LIMIT=10s); flags win.\n")
		fmt.Fprint(fs.Output(), "\nThe master's defaults and maxima per language are shown by the terminal client's\nInfo (F7) and set with 'kiln master --default-time, --max-time, ...'.\n\n"+exitCodesHelp+testsHelp)
	}
	return fs
}

// withTimeout bounds ctx by --timeout when it is set.
func (o *runOptions) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.timeout > 0 {
		return context.WithTimeout(ctx, o.timeout)
	}
	return ctx, func() {}
}

// connect checks the flags, reads the program and dials the master: the
// common start of `kiln run` and `kiln bench`. A nil client means the
// command should exit with code.
func (o *runOptions) connect(ctx context.Context, e env, cmd, file string) (client.Request, *client.Client, int) {
	if err := o.resolve(e); err != nil {
		fmt.Fprintf(e.stderr, "kiln %s: %v\n", cmd, err)
		return client.Request{}, nil, exitUsage
	}
	req, err := o.readRequest(e, file)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln %s: %v\n", cmd, err)
		return client.Request{}, nil, exitUsage
	}
	c, code := o.dial(ctx, e, cmd)
	return req, c, code
}

// readRequest reads FILE and the program's stdin and checks them before
// anything is dialled.
func (o *runOptions) readRequest(e env, file string) (client.Request, error) {
	req := client.Request{FileName: file, Seal: !o.noSeal, Limits: wire.JobLimits{
		TimeMs: o.limits.time.Milliseconds(), MemoryBytes: int64(o.limits.memory), OutputBytes: int64(o.limits.output)}}
	if fi, err := os.Stat(file); err == nil && fi.IsDir() {
		return req, fmt.Errorf("%s is a directory; give one source file (.c, .cpp, .cc, .java or .py)", file)
	}
	req.Language, req.Options = o.judge.lang, o.judge.options
	if wire.LanguageOf(file) == "" && req.Language == "" {
		// Refused before dialling; a language configured on the slaves
		// (docs/languages.md) is named with --lang.
		return req, fmt.Errorf("%w (for a language configured on the slaves, name it with --lang)", req.Check(wire.Limits{}))
	}
	var err error
	if req.Source, err = os.ReadFile(file); err != nil {
		return req, err
	}
	if req.Stdin, err = o.readStdin(e); err != nil {
		return req, err
	}
	return req, req.Check(wire.Limits{})
}

// maxLocalStdin bounds what `kiln run` reads as the program's standard
// input before it knows the master's own (smaller) limit.
const maxLocalStdin = 64 << 20

// readStdin returns the program's standard input: the file --stdin names,
// this command's own standard input for "--stdin -", or, without --stdin,
// this command's standard input when it is a pipe or a file rather than a
// terminal (`echo bob | kiln run readin.py`). It reads at most
// maxLocalStdin bytes.
func (o *runOptions) readStdin(e env) ([]byte, error) {
	var r io.Reader
	switch {
	case o.stdin == "-" || (o.stdin == "" && o.pipeStdin && e.stdin != nil && !isTerminalReader(e.stdin)):
		r = e.stdin
	case o.stdin != "":
		f, err := os.Open(o.stdin)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	default:
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, maxLocalStdin+1))
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	if len(b) > maxLocalStdin {
		return nil, fmt.Errorf("stdin is over %s, more than kiln run sends", formatSize(maxLocalStdin))
	}
	return b, nil
}

// isTerminalReader reports whether r is a terminal.
func isTerminalReader(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func cmdRun(ctx context.Context, e env, args []string) int {
	var o runOptions
	fs := runFlags(e, &o)
	fs.BoolVar(&o.noCache, "no-slave-cache", false, "do not read or write the slave cache: the slaves (names and public certificates) sealed\njobs last went to, kept under $XDG_CACHE_HOME/kiln or ~/.cache/kiln so that a\nrun's key is wrapped in its Submit, saving the master's key-wrap round trip")
	files, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return exitUsage
	}
	if err := applyEnv(fs, e); err != nil {
		fmt.Fprintf(e.stderr, "kiln run: %v\n", err)
		return exitUsage
	}
	if len(files) != 1 {
		fmt.Fprintln(e.stderr, "kiln run: want exactly one FILE")
		fs.Usage()
		return exitUsage
	}
	tests, err := o.judge.loadTests()
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln run: %v\n", err)
		return exitUsage
	}
	o.pipeStdin = tests == nil // a batch's input is its tests
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	req, c, code := o.connect(ctx, e, "run", files[0])
	if c == nil {
		return code
	}
	defer func() { c.Close() }() // followAcross may replace c
	var cache *runSlaveCache
	if req.Seal && !o.noCache {
		cache = openRunSlaveCache(e, "run", o.loaded, c)
	}
	code = o.runJob(ctx, e, &c, req, tests)
	cache.save(e, "run", c, code)
	return code
}

// runJob submits req (with its tests, if any) on *c and follows it to its
// end; it returns the exit code of kiln run.
func (o *runOptions) runJob(ctx context.Context, e env, c **client.Client, req client.Request, tests *client.Tests) int {
	req.Tests = tests
	if !o.json && isTerminal(e.stderr) && int64(len(req.Source)+len(req.Stdin)) > progressThreshold {
		req.Progress = progressLine(e.stderr, filepath.Base(req.FileName))
	}
	job, err := (*c).Submit(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return interruptedCode(ctx, e, "run")
		}
		return reportErr(e, "run", err)
	}
	if tests != nil {
		return o.followTests(ctx, e, job, tests)
	}
	return o.followAcross(ctx, e, c, job, "run")
}

// show prints one event as it arrives.
func (o *runOptions) show(e env, job *client.Job, ev client.Event) {
	switch {
	case o.json:
	case ev.Output != nil && ev.Output.Stream == wire.StreamStdout:
		e.stdout.Write(ev.Output.Data)
	case ev.Output != nil && ev.Output.Stream == wire.StreamStderr:
		e.stderr.Write(ev.Output.Data)
	case ev.State != nil && ev.State.State == wire.StateRequeued:
		fmt.Fprintf(e.stderr, "kiln run: job %s: its slave was lost, running it again elsewhere (output above is void)\n", job.ID())
	case ev.State != nil && o.verbose:
		fmt.Fprintf(e.stderr, "kiln run: job %s %s%s\n", job.ID(), ev.State.State, onSlave(ev.State.Slave))
	}
}

func onSlave(s string) string {
	if s == "" {
		return ""
	}
	return " on " + s
}

// cancelJob cancels a job after ctx ended and waits a little for the
// cancellation to be confirmed.
func cancelJob(ctx context.Context, e env, job *client.Job) int {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := job.Cancel(cctx); err == nil {
		job.Wait(cctx)
	}
	fmt.Fprintf(e.stderr, "kiln run: job %s cancelled\n", job.ID())
	return interruptedCode(ctx, e, "run")
}

// finish prints what a finished job leaves to print and returns the exit code.
func (o *runOptions) finish(e env, out client.Outcome) int {
	r := out.Result
	if o.json {
		if err := writeJSON(e.stdout, out); err != nil {
			fmt.Fprintf(e.stderr, "kiln run: %v\n", err)
			return exitInternal
		}
		return exitCodeOfResult(r)
	}
	if len(out.CompileOutput) > 0 && (r.Status == wire.StatusCompileError || o.verbose) {
		e.stderr.Write(out.CompileOutput)
		if out.CompileOutput[len(out.CompileOutput)-1] != '\n' {
			fmt.Fprintln(e.stderr)
		}
	}
	if r.Status != wire.StatusOK || o.verbose {
		fmt.Fprintln(e.stderr, summary(out))
	}
	return exitCodeOfResult(r)
}

// summary is the one-line description of a finished job.
func summary(out client.Outcome) string {
	r := out.Result
	var b strings.Builder
	fmt.Fprintf(&b, "kiln run: job %s%s: %s", out.Job, onSlave(r.Slave), r.Status)
	switch {
	case r.Signal > 0:
		fmt.Fprintf(&b, ", killed by signal %d", r.Signal)
	case r.Status == wire.StatusOK || r.Status == wire.StatusRuntimeError:
		fmt.Fprintf(&b, ", exit code %d", r.ExitCode)
	}
	if r.Detail != "" && r.Detail != fmt.Sprintf("exit code %d", r.ExitCode) {
		fmt.Fprintf(&b, " (%s)", r.Detail)
	}
	fmt.Fprintf(&b, "; wall %d ms, cpu %d ms, memory %s", r.WallMs, r.CPUMs, formatSize(r.MemoryKiB<<10))
	if r.Compiler != "" {
		fmt.Fprintf(&b, "; %s", r.Compiler)
		if r.Cached {
			b.WriteString(" (cached build)")
		}
	}
	return b.String()
}

// runJSON is the object `kiln run --json` prints.
type runJSON struct {
	Status        string `json:"status"`
	ExitCode      int    `json:"exit_code"`
	Signal        int    `json:"signal"`
	Stdout        string `json:"stdout"`
	Stderr        string `json:"stderr"`
	CompileOutput string `json:"compile_output"`
	WallMs        int64  `json:"wall_ms"`
	CPUMs         int64  `json:"cpu_ms"`
	MemoryKiB     int64  `json:"memory_kib"`
	Slave         string `json:"slave"`
	Language      string `json:"language"`
	Compiler      string `json:"compiler"`
	Cached        bool   `json:"cached"`
	Job           string `json:"job"`
	Attempts      int    `json:"attempts"`
	Detail        string `json:"detail,omitempty"`
}

func writeJSON(w io.Writer, out client.Outcome) error {
	r := out.Result
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(runJSON{
		Status: r.Status, ExitCode: r.ExitCode, Signal: r.Signal,
		Stdout: string(out.Stdout), Stderr: string(out.Stderr), CompileOutput: string(out.CompileOutput),
		WallMs: r.WallMs, CPUMs: r.CPUMs, MemoryKiB: r.MemoryKiB,
		Slave: r.Slave, Language: r.Language, Compiler: r.Compiler, Cached: r.Cached,
		Job: out.Job, Attempts: out.Attempts, Detail: r.Detail,
	})
}
