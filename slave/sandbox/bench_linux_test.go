package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"kiln/internal/testenv"
)

// The overhead benchmarks run the same program bare (os/exec, fork+exec+
// wait with piped output) and through a warm Strict runner, one run at a
// time, and report the median and 90th percentile per run:
//
//	go test -run '^$' -bench 'Trivial|Python' -benchtime 300x ./slave/sandbox/
//
// The *Overhead variants interleave bare and strict runs.

func BenchmarkTrivialBare(b *testing.B) {
	dir := trivialBinary(b)
	benchBare(b, dir, filepath.Join(dir, "true"))
}

func BenchmarkTrivialStrict(b *testing.B) {
	dir := trivialBinary(b)
	benchStrict(b, dir, "./true")
}

// BenchmarkTrivialStrictCold creates and destroys a sandbox (namespaces,
// root, cgroups) for every run: the cost the warm pool saves.
func BenchmarkTrivialStrictCold(b *testing.B) {
	dir := trivialBinary(b)
	benchRunner(b, StrictConfig{MaxIdle: -1}, dir, "./true")
}

func BenchmarkPythonBare(b *testing.B) {
	dir := pythonHello(b)
	benchBare(b, dir, "/usr/bin/python3", "-B", "main.py")
}

func BenchmarkPythonStrict(b *testing.B) {
	dir := pythonHello(b)
	benchStrict(b, dir, "/usr/bin/python3", "-B", "main.py")
}

// The Overhead benchmarks alternate a bare and a strict run of the same
// program, so that load from other processes hits both alike, and report
// both medians and their difference.
func BenchmarkTrivialOverhead(b *testing.B) {
	dir := trivialBinary(b)
	benchPairs(b, dir, "./true")
}

func BenchmarkPythonOverhead(b *testing.B) {
	dir := pythonHello(b)
	benchPairs(b, dir, "/usr/bin/python3", "-B", "main.py")
}

func benchPairs(b *testing.B, dir string, argv ...string) {
	r := warmRunner(b, StrictConfig{})
	bare, strict := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bare = append(bare, runBare(b, dir, argv))
		strict = append(strict, runStrict(b, r, dir, argv))
	}
	b.StopTimer()
	p50 := func(l []time.Duration) float64 {
		sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
		return float64(l[len(l)/2]) / 1e6
	}
	pb, ps := p50(bare), p50(strict)
	b.ReportMetric(pb, "bare-p50-ms")
	b.ReportMetric(ps, "strict-p50-ms")
	b.ReportMetric(ps-pb, "overhead-ms")
}

// trivialBinary compiles a static C program that exits at once.
func trivialBinary(b *testing.B) string {
	dir := b.TempDir()
	writeFile(b, dir, "true.c", "int main(void){return 0;}\n")
	out, err := exec.Command("gcc", "-O2", "-static", "-o", filepath.Join(dir, "true"), filepath.Join(dir, "true.c")).CombinedOutput()
	if err != nil {
		testenv.Need(b, "gcc -static", fmt.Errorf("%v: %s", err, out))
	}
	return dir
}

func pythonHello(b *testing.B) string {
	dir := b.TempDir()
	writeFile(b, dir, "main.py", "print('hello')\n")
	return dir
}

func benchBare(b *testing.B, dir string, argv ...string) {
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		times = append(times, runBare(b, dir, argv))
	}
	report(b, times)
}

func runBare(b *testing.B, dir string, argv []string) time.Duration {
	var out bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, []string{"PATH=/usr/bin:/bin"}, &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

func benchStrict(b *testing.B, dir string, argv ...string) {
	benchRunner(b, StrictConfig{}, dir, argv...)
}

func benchRunner(b *testing.B, cfg StrictConfig, dir string, argv ...string) {
	r := warmRunner(b, cfg)
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		times = append(times, runStrict(b, r, dir, argv))
	}
	report(b, times)
}

func warmRunner(b *testing.B, cfg StrictConfig) *Strict {
	testenv.Root(b, "the strict sandbox benchmarks")
	r, err := NewStrict(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	if err := r.Warm(1); err != nil {
		b.Fatal(err)
	}
	return r
}

func runStrict(b *testing.B, r *Strict, dir string, argv []string) time.Duration {
	var out bytes.Buffer
	spec := Spec{Argv: argv, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, Stdout: &out, Stderr: &out, Limits: defaultLimits()}
	start := time.Now()
	o, err := r.Run(context.Background(), spec)
	if err != nil || o.ExitCode != 0 {
		b.Fatalf("%+v %v %s", o, err, out.String())
	}
	return time.Since(start)
}

func report(b *testing.B, times []time.Duration) {
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	ms := func(q float64) float64 { return float64(times[int(q*float64(len(times)-1))]) / 1e6 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.9), "p90-ms")
	b.ReportMetric(float64(len(times)), "runs")
}
