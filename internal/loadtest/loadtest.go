// Package loadtest drives a real master with simulated peers and measures
// how it routes: N slaves (real mutual TLS sessions speaking the slave
// protocol, answering every job at once or after a set delay, without
// running anything) and M client sessions submitting small unsealed jobs at
// a set rate. It reports the jobs routed per second, the latency from
// Submit to Assign (seen by the slave) and to Result (seen by the client),
// and, through [Config.Master], the master's CPU time per job and memory
// per session.
//
// The master is not part of this package: `kiln loadtest` runs it as a
// child process (so that its CPU and memory are its own), the package test
// in-process.
//
// # Protocol flow per job
//
// client: Submit with its source inline → master: Accepted, JobState;
// master → slave: Assign with the source inline; slave: Result (after
// Config.SlaveDelay) → master → client: Result. With Config.Streams the
// source follows Submit and Assign on a file stream instead.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"kiln/certs"
)

// Config is one load test.
type Config struct {
	// ClientAddr and SlaveAddr are where the master listens.
	ClientAddr, SlaveAddr string
	// Slaves are the slave bundles, one simulated slave each, with Slots
	// slots; Clients are the client keys, Sessions sessions spread over
	// them.
	Slaves   []*certs.Bundle
	Slots    int
	Clients  []*certs.Bundle
	Sessions int
	// SlaveDelay is how long a slave takes to answer a job (0: at once).
	SlaveDelay time.Duration
	// Streams makes the peers send each job's source on a file stream,
	// as before feature inline; by default it travels inside Submit and
	// Assign, as kiln's client and slave send a small file.
	Streams bool
	// Quiet makes the client sessions announce wire.FeatureQuiet, as
	// `kiln bench` does: a master that speaks it sends them no progress
	// JobState, only Accepted and the Result.
	Quiet bool
	// Master reports the master's CPU time used so far and its resident
	// memory in bytes; nil when unknown.
	Master func() (cpu time.Duration, rss int64)
}

// Step is one rate of a run: Rate jobs per second offered, spread evenly
// over the sessions, for Duration.
type Step struct {
	Rate     float64
	Duration time.Duration
}

// Report is what one step measured.
type Report struct {
	Offered   float64       // jobs/s asked
	Submitted int           // jobs sent in the step
	Routed    int           // results received in the step
	Busy      int           // busy answers
	Errors    int           // other error answers
	Behind    int           // submits skipped: the session had one waiting already
	JobsPerS  float64       // Routed / wall time
	AssignP50 time.Duration // Submit → Assign at the slave
	AssignP99 time.Duration
	ResultP50 time.Duration // Submit → Result at the client
	ResultP99 time.Duration
	// MasterCPUPerJob is the master's CPU time over the step divided by
	// Routed; zero without Config.Master.
	MasterCPUPerJob time.Duration
	// MasterCPU is the share of one core the master used.
	MasterCPU float64
}

// Setup is a running set of simulated peers. Close stops them.
type Setup struct {
	cfg      Config
	slaves   []*slave
	sessions []*session
	assigned sync.Map // job id → when a slave got its Assign (Unix ns)
	// RSSIdle, RSSConnected are the master's resident bytes before the
	// peers connected and after (zero without Config.Master).
	RSSIdle, RSSConnected int64
	wrong                 atomic.Int64 // results that did not match their job
}

// job is one job's timeline, in nanoseconds since the Unix epoch.
// result is -1 for an error answer.
type job struct {
	submit, result atomic.Int64
	id             atomic.Pointer[string] // from Accepted
	req            uint64                 // owned by the session's sender
}

// ErrWrongResult is returned by Check when a result reached the wrong
// session or named a job the session did not submit.
var ErrWrongResult = errors.New("loadtest: a result did not match its job")

// Start connects the slaves, then the client sessions (at most 32
// handshakes at a time), bounded by ctx.
func Start(ctx context.Context, cfg Config) (*Setup, error) {
	s := &Setup{cfg: cfg}
	if cfg.Master != nil {
		_, s.RSSIdle = cfg.Master()
	}
	for i, b := range cfg.Slaves {
		sl, err := startSlave(ctx, s, b, cfg.Slots)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("loadtest: slave %d: %w", i, err)
		}
		s.slaves = append(s.slaves, sl)
	}
	s.sessions = make([]*session, cfg.Sessions)
	sem := make(chan struct{}, 32)
	errs := make(chan error, cfg.Sessions)
	var wg sync.WaitGroup
	for i := range cfg.Sessions {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			cs, err := startSession(ctx, s, cfg.Clients[i%len(cfg.Clients)])
			if err != nil {
				errs <- fmt.Errorf("loadtest: client session %d: %w", i, err)
				return
			}
			s.sessions[i] = cs
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		s.Close()
		return nil, err
	}
	if cfg.Master != nil {
		_, s.RSSConnected = cfg.Master()
	}
	return s, nil
}

// Run offers step.Rate jobs per second for step.Duration, then waits up to
// drain for the results of the jobs it submitted, and reports.
func (s *Setup) Run(ctx context.Context, step Step, drain time.Duration) Report {
	rep := Report{Offered: step.Rate}
	var cpu0 time.Duration
	if s.cfg.Master != nil {
		cpu0, _ = s.cfg.Master()
	}
	var submitted []*job
	var mu sync.Mutex
	start := time.Now()
	interval := time.Duration(float64(time.Second) / step.Rate)
	next := start
	for i := 0; ctx.Err() == nil && time.Since(start) < step.Duration; i++ {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		cs := s.sessions[i%len(s.sessions)]
		j, ok := cs.submit()
		if !ok {
			rep.Behind++
			continue
		}
		mu.Lock()
		submitted = append(submitted, j)
		mu.Unlock()
	}
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && ctx.Err() == nil && s.pending(submitted) > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	wall := time.Since(start)
	var cpu time.Duration
	if s.cfg.Master != nil {
		cpu1, _ := s.cfg.Master()
		cpu = cpu1 - cpu0
		rep.MasterCPU = cpu.Seconds() / wall.Seconds()
	}
	var toAssign, toResult []time.Duration
	for _, j := range submitted {
		sub := j.submit.Load()
		if id := j.id.Load(); id != nil {
			if a, ok := s.assigned.Load(*id); ok {
				toAssign = append(toAssign, time.Duration(a.(int64)-sub))
			}
		}
		if r := j.result.Load(); r > 0 {
			toResult = append(toResult, time.Duration(r-sub))
			rep.Routed++
		} else if r < 0 {
			rep.Errors++
		}
	}
	for _, cs := range s.sessions {
		rep.Busy += int(cs.busy.Swap(0))
	}
	rep.Errors -= rep.Busy
	rep.Submitted = len(submitted)
	rep.JobsPerS = float64(rep.Routed) / wall.Seconds()
	if rep.Routed > 0 {
		rep.MasterCPUPerJob = cpu / time.Duration(rep.Routed)
	}
	rep.AssignP50, rep.AssignP99 = pct(toAssign, 50), pct(toAssign, 99)
	rep.ResultP50, rep.ResultP99 = pct(toResult, 50), pct(toResult, 99)
	return rep
}

// Idle returns the share of one core the master uses over d with no job
// offered (keepalives and load reports of every session), or 0 without
// Config.Master.
func (s *Setup) Idle(ctx context.Context, d time.Duration) float64 {
	if s.cfg.Master == nil {
		return 0
	}
	c0, _ := s.cfg.Master()
	start := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	c1, _ := s.cfg.Master()
	return (c1 - c0).Seconds() / time.Since(start).Seconds()
}

// pending counts the jobs without a result or an error answer.
func (s *Setup) pending(jobs []*job) int {
	n := 0
	for _, j := range jobs {
		if j.result.Load() == 0 {
			n++
		}
	}
	return n
}

// Check returns ErrWrongResult if any result did not match its job.
func (s *Setup) Check() error {
	if n := s.wrong.Load(); n > 0 {
		return fmt.Errorf("%w (%d)", ErrWrongResult, n)
	}
	return nil
}

// SlaveJobs returns how many jobs each slave was assigned.
func (s *Setup) SlaveJobs() []int {
	out := make([]int, len(s.slaves))
	for i, sl := range s.slaves {
		out[i] = int(sl.assigned.Load())
	}
	return out
}

// InlineAssigns returns how many Assigns carried their source inline,
// and how many file streams the slaves received.
func (s *Setup) InlineAssigns() (inline, streams int) {
	for _, sl := range s.slaves {
		inline += int(sl.inline.Load())
		streams += int(sl.streams.Load())
	}
	return inline, streams
}

// Close closes every session and waits for their goroutines.
func (s *Setup) Close() {
	for _, cs := range s.sessions {
		if cs != nil {
			cs.close()
		}
	}
	for _, sl := range s.slaves {
		sl.close()
	}
}

// pct returns the p-th percentile (nearest rank) of ds, which it sorts.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func now() int64 { return time.Now().UnixNano() }
