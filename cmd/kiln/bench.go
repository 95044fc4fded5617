package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kiln/client"
	"kiln/transport/wire"
)

// benchOptions are the parsed flags of `kiln bench`.
type benchOptions struct {
	runOptions
	jobs, concurrency int
	baseline          bool
	procs             int // GOMAXPROCS of the cluster phase; 0: Go's default
}

// benchSample is what one job of a benchmark gave.
type benchSample struct {
	latency time.Duration // submit → result
	status  string        // result status, or "error"
	slave   string
	err     error
	retries int // busy answers retried
}

// benchStats summarises a set of samples.
type benchStats struct {
	Jobs       int            `json:"jobs"`
	WallMs     float64        `json:"wall_ms"`
	Throughput float64        `json:"jobs_per_s"`
	P50Ms      float64        `json:"p50_ms"`
	P95Ms      float64        `json:"p95_ms"`
	P99Ms      float64        `json:"p99_ms"`
	MaxMs      float64        `json:"max_ms"`
	Statuses   map[string]int `json:"statuses"`
	Slaves     map[string]int `json:"slaves,omitempty"`
	Retries    int            `json:"busy_retries,omitempty"`
	Errors     []string       `json:"errors,omitempty"`
}

// benchReport is what `kiln bench --json` prints.
type benchReport struct {
	File        string      `json:"file"`
	Language    string      `json:"language"`
	Concurrency int         `json:"concurrency"`
	ClientProcs int         `json:"client_procs"` // the client's GOMAXPROCS while it drove the cluster
	Sealed      bool        `json:"sealed"`
	Cluster     benchStats  `json:"cluster"`
	Bare        *benchStats `json:"bare,omitempty"`
	Ratio       float64     `json:"throughput_ratio,omitempty"` // cluster / bare
	AddedP50Ms  float64     `json:"added_p50_ms,omitempty"`     // cluster p50 - bare p50
	BareCommand string      `json:"bare_command,omitempty"`     // what --baseline ran
}

func benchFlags(e env, o *benchOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("kiln bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	o.register(fs)
	fs.IntVar(&o.jobs, "jobs", 20, "number of jobs to submit")
	fs.IntVar(&o.concurrency, "concurrency", 4, "jobs in flight at once")
	fs.IntVar(&o.procs, "procs", 1, "CPUs (GOMAXPROCS) this client uses while it drives the cluster; 0: Go's default, one per CPU.\n"+
		"One drives about 2,000 jobs per second; more only add thread wake-ups that take CPU from\n"+
		"a cluster on the same host. The bare run (--baseline) always gets Go's default")
	fs.BoolVar(&o.baseline, "baseline", false, "also run the program bare on this machine, as many times with the same concurrency, and compare")
	fs.StringVar(&o.stdin, "stdin", "", "feed `FILE` to every job's standard input")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of a table")
	fs.BoolVar(&o.noSeal, "no-seal", false, "submit the jobs unsealed (the master can read source, stdin and output)")
	fs.DurationVar(&o.limits.time, "time-limit", 0, "wall-clock limit of each run, e.g. 5s (default: the master's)")
	fs.Var(&o.limits.memory, "memory-limit", "memory limit of each run, a `SIZE` such as 256MiB (default: the master's)")
	fs.DurationVar(&o.timeout, "timeout", 0, "give up after this overall `DURATION` (default none)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kiln bench --bundle FILE --master HOST:PORT --jobs N --concurrency C [flags] FILE\n\n"+
			"Submits N copies of FILE over one connection with C in flight, and prints the\n"+
			"throughput, the latency percentiles (submit to result), the statuses and which\n"+
			"slaves ran how many. Busy answers are retried after the master's hint.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), "\nExit codes: 0 when every job got a result (whatever its status); otherwise\nthe code `kiln run` would give for the first failure (see kiln run --help).\n")
	}
	return fs
}

func cmdBench(ctx context.Context, e env, args []string) int {
	var o benchOptions
	fs := benchFlags(e, &o)
	files, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return exitUsage
	}
	if len(files) != 1 || o.jobs < 1 || o.concurrency < 1 || o.procs < 0 {
		fmt.Fprintln(e.stderr, "kiln bench: want exactly one FILE, --jobs >= 1, --concurrency >= 1 and --procs >= 0")
		fs.Usage()
		return exitUsage
	}
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()
	// From the handshake to the last result: one P, and the runtime's
	// threads with benchSlack of timer slack.
	restoreProcs, restoreSlack := withProcs(o.procs), withTimerSlack(benchSlack)
	restore := func() { restoreSlack(); restoreProcs() }
	defer restore()
	o.quiet = true // bench shows no job's progress: no JobState but requeued ones
	req, c, code := o.connect(ctx, e, "bench", files[0])
	if c == nil {
		return code
	}
	defer c.Close()
	return o.bench(ctx, e, c, req, restore)
}

// bench runs the cluster benchmark, then the bare one if asked, and
// reports. It calls restore (withProcs, withTimerSlack) once the cluster
// phase is over: the bare run gets the process as Go and the kernel set
// it up.
func (o *benchOptions) bench(ctx context.Context, e env, c *client.Client, req client.Request, restore func()) int {
	rep := benchReport{File: filepath.Base(req.FileName), Language: wire.LanguageOf(req.FileName),
		Concurrency: o.concurrency, Sealed: req.Seal}
	progress := o.progress(e, "cluster")
	rep.ClientProcs = runtime.GOMAXPROCS(0)
	samples, wall := runBatch(ctx, o.jobs, o.concurrency, progress, func(ctx context.Context) benchSample {
		return clusterJob(ctx, c, req)
	})
	restore()
	if ctx.Err() != nil {
		return interruptedCode(ctx, e, "bench")
	}
	rep.Cluster = summarize(samples, wall)
	if o.baseline {
		if code := o.bare(ctx, e, req, &rep); code != 0 {
			return code
		}
	}
	if o.json {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printBench(e.stdout, rep)
	}
	for _, s := range samples {
		if s.err != nil {
			return exitCodeOf(s.err)
		}
	}
	return 0
}

// benchSlack is the timer slack of the bench client's threads while it
// drives the cluster (withTimerSlack): one tick of a 250 Hz kernel.
const benchSlack = 4 * time.Millisecond

// withProcs sets GOMAXPROCS to n (0: leaves it) and returns what puts
// the previous value back (once; later calls do nothing). The bench client's work per job is small (an
// X25519 wrap and unwrap, a few messages); with a second P every hand-off
// between its goroutines (a job's, the reader's, yamux's) wakes another
// thread, which spins and sleeps again: 0.03-0.07 ms of CPU per job on two
// cores (docs/performance.md, "The bench client and the slave: CPU per
// job").
func withProcs(n int) (restore func()) {
	if n <= 0 {
		return func() {}
	}
	prev := runtime.GOMAXPROCS(n)
	return sync.OnceFunc(func() { runtime.GOMAXPROCS(prev) })
}

// progress returns a callback drawing "done/total" on stderr when it is a
// terminal, or nil.
func (o *benchOptions) progress(e env, what string) func(done int) {
	if !isTerminal(e.stderr) {
		return nil
	}
	return func(done int) {
		fmt.Fprintf(e.stderr, "\r%s: %d/%d jobs", what, done, o.jobs)
		if done == o.jobs {
			fmt.Fprintln(e.stderr)
		}
	}
}

// runBatch runs one() n times with c in flight and returns the samples and
// the wall time of the whole batch. It stops starting jobs when ctx ends.
func runBatch(ctx context.Context, n, c int, progress func(int), one func(context.Context) benchSample) ([]benchSample, time.Duration) {
	samples := make([]benchSample, 0, n)
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	for range min(c, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				s := one(ctx)
				mu.Lock()
				samples = append(samples, s)
				if progress != nil {
					progress(len(samples))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return samples, time.Since(start)
}

// clusterJob submits one job, retrying busy answers after the master's
// retry_after, and waits for it.
func clusterJob(ctx context.Context, c *client.Client, req client.Request) benchSample {
	var s benchSample
	start := time.Now()
	for {
		job, retries, err := c.SubmitRetry(ctx, req)
		s.retries += retries
		if err != nil {
			s.status, s.err = "error", err
			return s
		}
		out, err := job.Wait(ctx)
		s.latency = time.Since(start)
		if err != nil {
			s.status, s.err = "error", err
			return s
		}
		s.status, s.slave = out.Result.Status, out.Result.Slave
		return s
	}
}

// summarize computes throughput, latency percentiles and counts.
func summarize(samples []benchSample, wall time.Duration) benchStats {
	st := benchStats{Jobs: len(samples), WallMs: ms(wall), Statuses: map[string]int{}, Slaves: map[string]int{}}
	var lat []time.Duration
	for _, s := range samples {
		st.Statuses[s.status]++
		st.Retries += s.retries
		if s.err != nil {
			if len(st.Errors) < 5 {
				st.Errors = append(st.Errors, s.err.Error())
			}
			continue
		}
		lat = append(lat, s.latency)
		if s.slave != "" {
			st.Slaves[s.slave]++
		}
	}
	if wall > 0 {
		st.Throughput = float64(len(lat)) / wall.Seconds()
	}
	slices.Sort(lat)
	st.P50Ms, st.P95Ms, st.P99Ms = ms(percentile(lat, 50)), ms(percentile(lat, 95)), ms(percentile(lat, 99))
	if len(lat) > 0 {
		st.MaxMs = ms(lat[len(lat)-1])
	}
	return st
}

// percentile returns the p-th percentile (nearest rank) of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

// printBench writes the human-readable report.
func printBench(w io.Writer, r benchReport) {
	sealing := "sealed"
	if !r.Sealed {
		sealing = "unsealed"
	}
	fmt.Fprintf(w, "%d jobs of %s (%s), %s, concurrency %d, one connection, client on %d CPUs (--procs)\n",
		r.Cluster.Jobs, r.File, r.Language, sealing, r.Concurrency, r.ClientProcs)
	printStats(w, "cluster", r.Cluster)
	if r.Bare != nil {
		printStats(w, "bare", *r.Bare)
		fmt.Fprintf(w, "\nbare command:  %s\n", r.BareCommand)
		fmt.Fprintf(w, "throughput ratio cluster/bare: %.2f\n", r.Ratio)
		fmt.Fprintf(w, "added p50 latency:             %.1f ms\n", r.AddedP50Ms)
	}
}

func printStats(w io.Writer, name string, s benchStats) {
	fmt.Fprintf(w, "\n%s\n", name)
	fmt.Fprintf(w, "  wall        %.2f s\n", s.WallMs/1000)
	fmt.Fprintf(w, "  throughput  %.1f jobs/s\n", s.Throughput)
	fmt.Fprintf(w, "  latency     p50 %.1f ms  p95 %.1f ms  p99 %.1f ms  max %.1f ms\n", s.P50Ms, s.P95Ms, s.P99Ms, s.MaxMs)
	fmt.Fprintf(w, "  statuses    %s\n", countList(s.Statuses))
	if s.Retries > 0 {
		fmt.Fprintf(w, "  busy        %d retries\n", s.Retries)
	}
	if len(s.Slaves) > 0 {
		fmt.Fprintf(w, "  %-24s %5s\n", "slave", "jobs")
		for _, name := range sortedKeys(s.Slaves) {
			fmt.Fprintf(w, "  %-24s %5d\n", name, s.Slaves[name])
		}
	}
	for _, err := range s.Errors {
		fmt.Fprintf(w, "  error: %s\n", err)
	}
}

func countList(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// bare runs the program locally as many times with the same concurrency and
// fills the comparison fields of rep.
func (o *benchOptions) bare(ctx context.Context, e env, req client.Request, rep *benchReport) int {
	dir, err := os.MkdirTemp("", "kiln-bench-")
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln bench: %v\n", err)
		return exitInternal
	}
	defer os.RemoveAll(dir)
	argv, err := bareCommand(ctx, dir, req)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln bench: baseline: %v\n", err)
		return exitInternal
	}
	samples, wall := runBatch(ctx, o.jobs, o.concurrency, o.progress(e, "bare"), func(ctx context.Context) benchSample {
		return bareJob(ctx, argv, dir, req.Stdin)
	})
	if ctx.Err() != nil {
		return interruptedCode(ctx, e, "bench")
	}
	bare := summarize(samples, wall)
	rep.Bare, rep.BareCommand = &bare, strings.Join(argv, " ")
	if bare.Throughput > 0 {
		rep.Ratio = math.Round(rep.Cluster.Throughput/bare.Throughput*100) / 100
	}
	rep.AddedP50Ms = math.Round((rep.Cluster.P50Ms-bare.P50Ms)*100) / 100
	return 0
}

// bareCommand prepares the program in dir (compiling it once when needed)
// and returns the command line that runs it.
func bareCommand(ctx context.Context, dir string, req client.Request) ([]string, error) {
	name := filepath.Base(req.FileName)
	src := filepath.Join(dir, name)
	if err := os.WriteFile(src, req.Source, 0o600); err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "prog")
	var compile []string
	var argv []string
	switch wire.LanguageOf(name) {
	case wire.LangPython:
		argv = []string{"/usr/bin/python3", src} // not a PATH shim (pyenv): the interpreter slaves find
		if _, err := os.Stat(argv[0]); err != nil {
			argv[0] = "python3"
		}
	case wire.LangC:
		compile, argv = []string{"gcc", "-O2", "-o", bin, src, "-lm"}, []string{bin}
	case wire.LangCPP:
		compile, argv = []string{"g++", "-O2", "-o", bin, src}, []string{bin}
	case wire.LangJava:
		compile = []string{"javac", "-d", dir, src}
		argv = []string{"java", "-cp", dir, strings.TrimSuffix(name, filepath.Ext(name))}
	}
	if compile != nil {
		if out, err := exec.CommandContext(ctx, compile[0], compile[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(compile, " "), err, out)
		}
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, err
	}
	argv[0] = path
	return argv, nil
}

// bareJob runs the prepared program once and times it.
func bareJob(ctx context.Context, argv []string, dir string, stdin []byte) benchSample {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(string(stdin))
	start := time.Now()
	err := cmd.Run()
	s := benchSample{latency: time.Since(start), status: wire.StatusOK}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		s.status = wire.StatusRuntimeError
	case err != nil:
		s.status, s.err = "error", err
	}
	return s
}
