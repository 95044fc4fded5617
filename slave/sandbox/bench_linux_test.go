package sandbox

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// The overhead benchmarks run the same program bare (os/exec, fork+exec+
// wait with piped output) and through a warm Strict runner, one run at a
// time, and report the median and 90th percentile per run:
//
//	go test -run '^$' -bench 'Trivial|Python' -benchtime 300x ./slave/sandbox/

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

// trivialBinary compiles a static C program that exits at once.
func trivialBinary(b *testing.B) string {
	dir := b.TempDir()
	writeFile(b, dir, "true.c", "int main(void){return 0;}\n")
	out, err := exec.Command("gcc", "-O2", "-static", "-o", filepath.Join(dir, "true"), filepath.Join(dir, "true.c")).CombinedOutput()
	if err != nil {
		b.Skipf("gcc -static unavailable: %v %s", err, out)
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
		var out bytes.Buffer
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, []string{"PATH=/usr/bin:/bin"}, &out, &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	report(b, times)
}

func benchStrict(b *testing.B, dir string, argv ...string) {
	benchRunner(b, StrictConfig{}, dir, argv...)
}

func benchRunner(b *testing.B, cfg StrictConfig, dir string, argv ...string) {
	if os.Geteuid() != 0 {
		b.Skip("strict sandbox benchmarks need root; skipping")
	}
	r, err := NewStrict(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	if err := r.Warm(1); err != nil {
		b.Fatal(err)
	}
	lim := defaultLimits()
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var out bytes.Buffer
		spec := Spec{Argv: argv, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, Stdout: &out, Stderr: &out, Limits: lim}
		start := time.Now()
		o, err := r.Run(context.Background(), spec)
		if err != nil || o.ExitCode != 0 {
			b.Fatalf("%+v %v %s", o, err, out.String())
		}
		times = append(times, time.Since(start))
	}
	report(b, times)
}

func report(b *testing.B, times []time.Duration) {
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	ms := func(q float64) float64 { return float64(times[int(q*float64(len(times)-1))]) / 1e6 }
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.9), "p90-ms")
	b.ReportMetric(float64(len(times)), "runs")
}
