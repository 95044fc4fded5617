package sandbox

import (
	"sort"
	"testing"
	"time"
)

// BenchmarkTrivialFilterOverhead alternates three runs of the static C
// binary that returns 0: bare, strict with the syscall filter, and strict
// without it (two warm runners), and reports the three medians and the
// differences:
//
//	go test -run '^$' -bench TrivialFilterOverhead -benchtime 300x ./slave/sandbox/
func BenchmarkTrivialFilterOverhead(b *testing.B) {
	benchFilter(b, trivialBinary(b), "./true")
}

// BenchmarkPythonFilterOverhead is the same with Python's hello world,
// whose start-up makes about a thousand system calls.
func BenchmarkPythonFilterOverhead(b *testing.B) {
	benchFilter(b, pythonHello(b), "/usr/bin/python3", "-B", "main.py")
}

func benchFilter(b *testing.B, dir string, argv ...string) {
	on := warmRunner(b, StrictConfig{})
	off := warmRunner(b, StrictConfig{MaxIdle: -1}) // nothing pooled yet
	off.Close()
	off, err := NewStrict(StrictConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { off.Close() })
	off.noFilter, off.setup.NoFilter = true, true
	if err := off.Warm(1); err != nil {
		b.Fatal(err)
	}
	bare, filtered, unfiltered := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bare = append(bare, runBare(b, dir, argv))
		filtered = append(filtered, runStrict(b, on, dir, argv))
		unfiltered = append(unfiltered, runStrict(b, off, dir, argv))
	}
	b.StopTimer()
	p50 := func(l []time.Duration) float64 {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return float64(l[len(l)/2]) / 1e6
	}
	pb, pf, pu := p50(bare), p50(filtered), p50(unfiltered)
	b.ReportMetric(pb, "bare-p50-ms")
	b.ReportMetric(pf, "filter-p50-ms")
	b.ReportMetric(pu, "nofilter-p50-ms")
	b.ReportMetric(pf-pb, "overhead-ms")
	b.ReportMetric(pf-pu, "filter-cost-ms")
}
