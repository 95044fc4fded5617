package slave

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
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
	s.mu.Lock()
	defer s.mu.Unlock()
	var lines []string
	for _, step := range s.order {
		l := slices.Clone(s.times[step])
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		p50 := float64(l[len(l)/2].Nanoseconds()) / 1e3
		b.ReportMetric(p50, step+"-us")
		lines = append(lines, fmt.Sprintf("%-12s %8.1f us", step, p50))
	}
	b.Logf("p50 per step over %d runs:\n%s", b.N, strings.Join(lines, "\n"))
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
