package state_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/master/state"
	"kiln/transport/wire"
)

// lifecycle runs one job through the commands a master proposes for it:
// submit, assign, result, deliver.
func lifecycle(b testing.TB, s *state.Store, src, out []byte) {
	ctx := context.Background()
	c := submit("alice", "")
	c.New.Source = src
	j, err := s.Apply(ctx, c)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []*state.Command{cmd(state.KindAssign, j.ID, 1),
		{Kind: state.KindResult, Now: t0, Job: j.ID, Attempt: 1, Result: &wire.Result{JobID: j.ID, Attempt: 1, Status: wire.StatusOK},
			Output: []state.Chunk{{Stream: 1, Data: out}}},
		cmd(state.KindDeliver, j.ID, 0)} {
		if _, err := s.Apply(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJobs runs job lifecycles from 4 goroutines against a store on
// disk (fsync'ed, as the master runs) and against an in-memory one; the
// ratio of their jobs/s is the cost of durability. The run from 64
// goroutines shows raft's group commit: one fsync for every command
// waiting when the previous one ends.
//
//	go test -run XXX -bench Jobs -benchtime 2000x ./master/state
func BenchmarkJobs(b *testing.B) {
	src, out := make([]byte, 300), make([]byte, 200)
	for _, run := range []struct {
		mode string
		conc int
	}{{"durable", 4}, {"memory", 4}, {"durable", 64}} {
		mode := run.mode
		b.Run(fmt.Sprintf("%s/c%d", run.mode, run.conc), func(b *testing.B) {
			cfg := testConfig(b.TempDir())
			cfg.InMemory = mode == "memory"
			cfg.SnapshotInterval, cfg.SnapshotThreshold = 0, 0
			s, err := state.Open(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < run.conc; w++ {
				n := b.N / run.conc
				if w < b.N%run.conc {
					n++
				}
				wg.Go(func() {
					for i := 0; i < n; i++ {
						lifecycle(b, s, src, out)
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "jobs/s")
		})
	}
}

// BenchmarkDisk10k runs 10,000 jobs (300-byte source, 200 bytes of
// output) through a store on disk and reports the bytes the data
// directory holds after a snapshot, per 10,000 jobs.
//
//	go test -run XXX -bench Disk10k -benchtime 1x ./master/state
func BenchmarkDisk10k(b *testing.B) {
	src, out := make([]byte, 300), make([]byte, 200)
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		cfg := testConfig(dir)
		cfg.NoSync = true // the bytes are the same; the run is shorter
		// The defaults the master runs with, and a check often enough
		// to see them in a short run.
		cfg.SnapshotThreshold, cfg.TrailingLogs, cfg.SnapshotInterval = 0, 0, 200*time.Millisecond
		s, err := state.Open(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Go(func() {
				for i := 0; i < 2500; i++ {
					lifecycle(b, s, src, out)
				}
			})
		}
		wg.Wait()
		if err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
		s.Close()
		var total int64
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				fi, _ := d.Info()
				total += fi.Size()
			}
			return err
		})
		b.ReportMetric(float64(total), "bytes/10kjobs")
		if i == 0 {
			b.Log(fmt.Sprintf("%s: %d bytes", dir, total))
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if fi, _ := d.Info(); err == nil && !d.IsDir() {
					b.Log(p, fi.Size())
				}
				return err
			})
		}
	}
}

// masterJob runs one job through the store the way the master does:
// Submit waited for (Accepted), Assign proposed lazily, Result waited
// for (before the client is told), Deliver proposed lazily.
func masterJob(b testing.TB, s *state.Store, src, out []byte) {
	c := submit("alice", "")
	c.New.Source = src
	j, err := s.Propose(c).Wait()
	if err != nil {
		b.Fatal(err)
	}
	s.ProposeLazy(cmd(state.KindAssign, j.ID, 1))
	if _, err := s.Propose(&state.Command{Kind: state.KindResult, Now: t0, Job: j.ID, Attempt: 1,
		Result: &wire.Result{JobID: j.ID, Attempt: 1, Status: wire.StatusOK}, Output: []state.Chunk{{Stream: 1, Data: out}}}).Wait(); err != nil {
		b.Fatal(err)
	}
	s.ProposeLazy(cmd(state.KindDeliver, j.ID, 0))
}

// BenchmarkMasterJobs runs jobs from 1, 4 and 16 goroutines with the
// master's pattern of waits (masterJob) against a store on disk, and
// reports the log entries (one fsync each) written per job, counted
// from the log itself: group commit and lazy commands at work; and the
// process's CPU time per job (user and system: the store's encoding,
// raft, bbolt and the kernel's side of its writes and fsyncs).
//
//	go test -run XXX -bench MasterJobs -benchtime 1000x ./master/state
func BenchmarkMasterJobs(b *testing.B) {
	src, out := make([]byte, 300), make([]byte, 200)
	for _, conc := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("c%d", conc), func(b *testing.B) {
			s, err := state.Open(context.Background(), testConfig(b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			first := written(s, false)
			b.ResetTimer()
			cpu0 := cpuTime()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < conc; w++ {
				n := b.N / conc
				if w < b.N%conc {
					n++
				}
				wg.Go(func() {
					for i := 0; i < n; i++ {
						masterJob(b, s, src, out)
					}
				})
			}
			wg.Wait()
			el, cpu := time.Since(start), cpuTime()-cpu0
			b.StopTimer()
			last := written(s, true)
			b.ReportMetric(float64(b.N)/el.Seconds(), "jobs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/job")
			b.ReportMetric(float64(last-first)/float64(b.N), "entries/job")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// written returns the log entries the store wrote; with closed, after
// closing it (its last lazy commands written), less its stop mark.
func written(s *state.Store, closed bool) uint64 {
	if !closed {
		return s.WriteStats().Entries
	}
	s.Close()
	return s.WriteStats().Entries - 1
}

// BenchmarkImage times Machine.Image over 200,000 records: what raft
// runs on the goroutine that applies the log when it takes a snapshot,
// during which no Submit or Result is answered.
//
//	go test -run XXX -bench Image -benchtime 10x ./master/state
func BenchmarkImage(b *testing.B) {
	m := state.NewMachine()
	for i := 0; i < 200_000; i++ {
		if r := m.Apply(submit("alice", "")); r.Err != nil {
			b.Fatal(r.Err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if img := m.Image(); img == nil {
			b.Fatal("no image")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/image")
}
