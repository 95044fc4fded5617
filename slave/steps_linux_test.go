package slave

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// The per-step benchmarks time one job of a cached program on the slave,
// step by step: the executor's steps (job directory, compile cache,
// sandbox spec, the sandbox run, result, clean-up) and, inside the
// sandbox run, the strict runner's and its init's (sandbox.StrictConfig
// Trace). Each step's median over the runs is reported in microseconds:
//
//	go test -run '^$' -bench 'CachedSteps' -benchtime 300x ./slave/
func BenchmarkCachedStepsC(b *testing.B) {
	needLang(b, wire.LangC)
	src, err := os.ReadFile(filepath.Join("..", "examples", "hello.c"))
	if err != nil {
		b.Fatal(err)
	}
	benchSteps(b, Job{Language: wire.LangC, FileName: "hello.c", Source: src})
}

func BenchmarkCachedStepsPython(b *testing.B) {
	needLang(b, wire.LangPython)
	src, err := os.ReadFile(filepath.Join("..", "examples", "hello.py"))
	if err != nil {
		b.Fatal(err)
	}
	benchSteps(b, Job{Language: wire.LangPython, FileName: "hello.py", Source: src})
}

// stepTimes collects the durations of each named step.
type stepTimes struct {
	mu    sync.Mutex
	order []string
	times map[string][]time.Duration
}

func (s *stepTimes) add(step string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.times == nil {
		s.times = map[string][]time.Duration{}
	}
	if _, ok := s.times[step]; !ok {
		s.order = append(s.order, step)
	}
	s.times[step] = append(s.times[step], d)
}

func (s *stepTimes) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.order, s.times = nil, nil
}

// report gives each step's median as a metric and logs them as a table.
func (s *stepTimes) report(b *testing.B) {
	for step, p50 := range s.medians() {
		b.ReportMetric(p50, step+"-us")
	}
	s.log(b, b.N)
}

// medians returns each step's median in microseconds.
func (s *stepTimes) medians() map[string]float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]float64{}
	for _, step := range s.order {
		l := slices.Clone(s.times[step])
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		m[step] = float64(l[len(l)/2].Nanoseconds()) / 1e3
	}
	return m
}

// log logs each step's median, in the order of the steps.
func (s *stepTimes) log(t testing.TB, runs int) {
	m := s.medians()
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []string
	for _, step := range s.order {
		lines = append(lines, fmt.Sprintf("%-12s %8.1f us", step, m[step]))
	}
	t.Logf("p50 per step over %d runs:\n%s", runs, strings.Join(lines, "\n"))
}

func benchSteps(b *testing.B, job Job) {
	testenv.Root(b, "the strict sandbox (uid mappings, cgroups)")
	var st stepTimes
	r, err := sandbox.NewStrict(sandbox.StrictConfig{Trace: st.add})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	e, _ := newExecutor(b, r)
	e.trace = st.add
	job.ID, job.Owner, job.Limits = "steps", "owner", wire.JobLimits{TimeMs: 5000, MemoryBytes: 256 << 20, OutputBytes: 1 << 20}
	run := func() {
		res := e.Execute(context.Background(), job, func(uint8, []byte) {})
		if res.Status != wire.StatusOK {
			b.Fatalf("%s: %s %s", res.Status, res.Detail, res.CompileOutput)
		}
	}
	for range 5 { // compiled and cached, the pool warm
		run()
	}
	st.reset()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		run()
		st.add("execute", time.Since(start))
	}
	b.StopTimer()
	st.report(b)
}

// TestJobStepsOverSession times a cached job from the master's side of a
// real session (loopback mutual TLS): the Assign, with its source inline,
// sent, to the Result received, against the executor's own time for the
// job and the sandbox's steps inside it, so that the session's share
// (decoding the Assign, the keeper, the job goroutine, a slot, the Output
// and Result messages, TLS both ways) is the round trip minus Execute. It
// is a measurement, run on demand:
//
//	KILN_JOB_STEPS=300 go test -run TestJobStepsOverSession -v ./slave/
func TestJobStepsOverSession(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KILN_JOB_STEPS"))
	if n <= 0 {
		t.Skip("a measurement: set KILN_JOB_STEPS to the number of jobs")
	}
	needLang(t, wire.LangC)
	testenv.Root(t, "the strict sandbox (uid mappings, cgroups)")
	src, err := os.ReadFile(filepath.Join("..", "examples", "hello.c"))
	if err != nil {
		t.Fatal(err)
	}
	var st stepTimes
	r, err := sandbox.NewStrict(sandbox.StrictConfig{Trace: st.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	e, _ := newExecutor(t, r)
	var exec time.Duration // the executor's steps of the current job, summed
	e.trace = func(step string, d time.Duration) {
		exec += d
		st.add(step, d)
	}
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	s, err := New(Config{Bundle: sb, Master: m.ln.Addr().String(), Slots: 1, Executor: e, LoadInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	ms := m.next(t)
	var in wire.Inline
	in.Set(wire.FileSource, src, false)
	job := func(i int) time.Duration {
		id := fmt.Sprint("j", i)
		start := time.Now()
		ms.assign(t, wire.Assign{JobID: id, Attempt: 1, Language: wire.LangC, FileName: "hello.c", Owner: "o",
			SourceSize: int64(len(src)), Inline: in, Limits: wire.JobLimits{TimeMs: 5000}})
		res, _ := ms.jobResult(t, id)
		if res.Status != wire.StatusOK || (i > 0 && !res.Cached) {
			t.Fatalf("%s: %+v", id, res)
		}
		return time.Since(start)
	}
	for i := range 5 { // compiled, cached, the pool warm
		job(i)
	}
	st.reset()
	for i := range n {
		exec = 0
		rtt := job(5 + i)
		st.add("round-trip", rtt)
		st.add("execute", exec)
		st.add("session", rtt-exec)
	}
	st.log(t, n)
}
