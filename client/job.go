package client

import (
	"bytes"
	"context"
	"sync"

	"kiln/transport/wire"
)

// Event is one thing that happened to a job. Exactly one field is non-nil.
type Event struct {
	State  *wire.JobState
	Output *wire.Output
	Result *wire.Result
	// Gap reports Output events dropped just before this one because the
	// reader of [Job.Events] fell behind by more than the job's output
	// bound (their bytes are still in the Outcome, within its bound).
	Gap *Gap
	// Test is one case's verdict of a test batch, as soon as it is known.
	Test *wire.TestVerdict
}

// Gap counts Output events dropped from [Job.Events].
type Gap struct {
	Events int
	Bytes  int64
}

// DefaultMaxOutput bounds the output a Job buffers when neither the
// request nor the master's Welcome gives an output limit.
const DefaultMaxOutput = 16 << 20

// Outcome is what a finished job produced: its Result and the output of its
// last attempt.
type Outcome struct {
	Job           string
	Result        wire.Result
	Stdout        []byte
	Stderr        []byte
	CompileOutput []byte // Result.CompileOutput, or the streamed compile output
	Attempts      int    // number of attempts (1 unless the job was requeued)
	// Truncated reports that the slave sent more output than the job's
	// output bound (its output limit, else the master's max_output): what
	// is past the bound was dropped, not buffered.
	Truncated bool
	// Tests are the verdicts of a test batch's cases, by index; a case
	// not judged (the batch stopped early) has status skipped.
	Tests []wire.TestVerdict
}

// Job is a submitted job. Its methods are safe for concurrent use. The
// client's reader goroutine feeds it; a job ends when its Result arrives or
// the session with the master ends.
type Job struct {
	c    *Client
	id   string
	seal *jobSeal // nil unless the job is sealed; guarded by mu

	mu      sync.Mutex
	attempt int
	stdout  bytes.Buffer
	stderr  bytes.Buffer
	compile bytes.Buffer
	result  *wire.Result
	err     error
	// nextSeq is one past the highest Output.Seq received in the current
	// attempt. A job carried over by Reattach (seen set) skips the chunks
	// of that attempt below skipTo: the master sends them again.
	nextSeq uint64
	seen    bool
	skipTo  uint64
	// attachedState is the job's state in the Attached that created it.
	attachedState string
	queue         []Event       // events not yet handed to the Events channel
	notify        chan struct{} // signalled (cap 1) when queue grows or the job ends
	done          chan struct{} // closed when result or err is set
	// maxOutput bounds both the output buffered for the Outcome and the
	// output bytes waiting in queue; past it output is dropped (see
	// Outcome.Truncated and Event.Gap).
	maxOutput int64
	queued    int64 // output bytes in queue
	truncated bool
	gap       Gap                      // Output events dropped since the last one queued
	verdicts  map[int]wire.TestVerdict // this attempt's test verdicts by index

	eventsOnce sync.Once
	events     chan Event
}

func newJob(c *Client, id string, maxOutput int64) *Job {
	if maxOutput <= 0 {
		maxOutput = DefaultMaxOutput
	}
	return &Job{c: c, id: id, notify: make(chan struct{}, 1), done: make(chan struct{}), maxOutput: maxOutput}
}

// ID returns the job id the master assigned.
func (j *Job) ID() string { return j.id }

// Done returns a channel closed when the job has ended (result or error).
func (j *Job) Done() <-chan struct{} { return j.done }

// Events returns a channel of the job's events in order, from the first
// JobState after Accepted to the Result. The channel is closed after the
// Result, or when the session ends; call [Job.Wait] then for the outcome.
// Every call returns the same channel. Reading it is optional: [Job.Wait]
// does not depend on it. Events wait in a queue until read; the Output
// events in it are bounded by the job's output bound (its output limit,
// else the master's max_output, else [DefaultMaxOutput]): past it Output
// events are dropped and the next event queued is preceded by one whose
// Gap counts them. State and Result events are never dropped. Once Events
// was called, a reader that stops early holds one goroutine until the
// job's events are drained or the client is closed.
func (j *Job) Events() <-chan Event {
	j.eventsOnce.Do(func() {
		j.events = make(chan Event)
		tracked := j.c.track()
		go func() {
			if tracked {
				defer j.c.wg.Done()
			}
			j.pump()
		}()
	})
	return j.events
}

// pump moves queued events to the Events channel until the job has ended
// and every event was delivered, or the client is closed.
func (j *Job) pump() {
	defer close(j.events)
	for {
		j.mu.Lock()
		q := j.queue
		j.queue, j.queued = nil, 0
		ended := j.result != nil || j.err != nil
		j.mu.Unlock()
		for _, ev := range q {
			select {
			case j.events <- ev:
			case <-j.c.closing:
				return
			}
		}
		if len(q) > 0 {
			continue
		}
		if ended {
			return
		}
		select {
		case <-j.notify:
		case <-j.c.closing:
			return
		}
	}
}

// Wait blocks until the job's Result arrives and returns the outcome, or
// returns a *[LostError] when the session ended first, or ctx's error. It
// may be called any number of times and from several goroutines; every call
// sees the same outcome.
func (j *Job) Wait(ctx context.Context) (Outcome, error) {
	select {
	case <-j.done:
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return Outcome{}, j.err
	}
	o := Outcome{
		Job:           j.id,
		Result:        *j.result,
		Stdout:        bytes.Clone(j.stdout.Bytes()),
		Stderr:        bytes.Clone(j.stderr.Bytes()),
		CompileOutput: j.result.CompileOutput,
		Attempts:      max(j.attempt, 1),
		Truncated:     j.truncated,
		Tests:         j.testOutcome(),
	}
	if len(o.CompileOutput) == 0 {
		o.CompileOutput = bytes.Clone(j.compile.Bytes())
	}
	return o, nil
}

// Cancel asks the master to stop the job. The job then ends with a Result
// of status cancelled (unless it finished first); Cancel does not wait.
func (j *Job) Cancel(ctx context.Context) error {
	select {
	case <-j.done:
		return nil
	default:
	}
	return j.c.send(ctx, wire.MsgCancel, 0, wire.Cancel{JobID: j.id})
}

// result ends the job with its Result unless it belongs to a voided
// attempt. It reports whether the job has ended.
func (j *Job) resultMsg(res wire.Result) bool {
	j.mu.Lock()
	stale := res.Attempt != 0 && res.Attempt < j.attempt
	var err error
	if !stale && j.seal != nil {
		var cut bool
		if cut, err = j.seal.openResult(j.id, &res); cut {
			j.truncated = true
		}
	}
	if !stale && err == nil {
		err = j.checkTestCount(res)
	}
	j.mu.Unlock()
	if stale {
		return false // the result of a voided attempt
	}
	if err != nil {
		j.finish(nil, &SealError{Job: j.id, Op: "output", Err: err}, Event{})
		return true
	}
	j.finish(&res, nil, Event{Result: &res})
	return true
}

// state records a lifecycle change. A requeued job's output so far is void;
// a failed job that never sent a Result ends with an internal_error Result.
// It reports whether the job has ended.
func (j *Job) state(st wire.JobState) bool {
	switch st.State {
	case wire.StateRequeued:
		j.mu.Lock()
		j.stdout.Reset()
		j.stderr.Reset()
		j.compile.Reset()
		j.truncated = false
		if st.Attempt > j.attempt {
			j.attempt, j.nextSeq = st.Attempt, 0
		}
		j.verdicts = nil
		j.mu.Unlock()
	case wire.StateFailed:
		res := &wire.Result{JobID: j.id, Attempt: st.Attempt, Status: wire.StatusInternalError,
			Slave: st.Slave, Detail: st.Detail}
		j.push(Event{State: &st})
		j.finish(res, nil, Event{Result: res})
		return true
	default:
		j.mu.Lock()
		void := j.seen && st.Attempt > j.attempt
		if void {
			// Carried over by Reattach into a newer attempt than the one
			// it had: as after a requeue, the output so far is void.
			j.stdout.Reset()
			j.stderr.Reset()
			j.compile.Reset()
			j.truncated, j.seen = false, false
		}
		if st.Attempt > j.attempt {
			j.attempt, j.nextSeq = st.Attempt, 0
		}
		j.mu.Unlock()
		if void {
			j.push(Event{State: &wire.JobState{JobID: j.id, State: wire.StateRequeued, Attempt: st.Attempt}})
		}
	}
	j.push(Event{State: &st})
	return false
}

// output appends a chunk of the current attempt's output, once it
// authenticated if the job is sealed. It reports whether the job has
// ended (sealed output that failed authentication ends it).
func (j *Job) output(out wire.Output) bool {
	j.mu.Lock()
	if out.Attempt != 0 && out.Attempt < j.attempt {
		j.mu.Unlock()
		return false // a chunk of a voided attempt
	}
	if j.seen && (out.Attempt == 0 || out.Attempt == j.attempt) && out.Seq < j.skipTo {
		j.mu.Unlock()
		return false // sent again after a reattach: already here
	}
	if out.Attempt > j.attempt && j.seen {
		// A newer attempt than the one before the session was lost: the
		// output so far is void, as after a requeue.
		j.stdout.Reset()
		j.stderr.Reset()
		j.compile.Reset()
		j.truncated = false
		j.attempt, j.seen = out.Attempt, false
	}
	if out.Attempt > j.attempt {
		j.attempt, j.nextSeq = out.Attempt, 0
	}
	j.nextSeq = max(j.nextSeq, out.Seq+1)
	if j.seal != nil {
		p, err := j.seal.open(j.id, out)
		if err != nil {
			j.mu.Unlock()
			j.finish(nil, &SealError{Job: j.id, Op: "output", Err: err}, Event{})
			j.c.cancelOrphan(j.id) // nobody will read what it produces
			return true
		}
		if len(p) == 0 {
			j.mu.Unlock()
			return false // the empty last message of a stream
		}
		out.Data, out.Key = p, nil
	}
	data := out.Data
	if room := j.maxOutput - int64(j.stdout.Len()+j.stderr.Len()+j.compile.Len()); int64(len(data)) > room {
		data, j.truncated = data[:max(room, 0)], true
	}
	switch out.Stream {
	case wire.StreamStdout:
		j.stdout.Write(data)
	case wire.StreamStderr:
		j.stderr.Write(data)
	case wire.StreamCompile:
		j.compile.Write(data)
	}
	j.mu.Unlock()
	j.push(Event{Output: &out})
	return false
}

// push queues an event for the Events channel. An Output event that would
// take the queue's output bytes past the job's bound is dropped and counted
// in the next event's Gap.
func (j *Job) push(ev Event) {
	j.mu.Lock()
	if ev.Output != nil {
		n := int64(len(ev.Output.Data))
		if j.queued+n > j.maxOutput {
			j.gap.Events++
			j.gap.Bytes += n
			j.mu.Unlock()
			return
		}
		j.queued += n
	}
	j.flushGapLocked()
	j.queue = append(j.queue, ev)
	j.mu.Unlock()
	j.wake()
}

// flushGapLocked queues the Gap event for dropped Output events, if any.
func (j *Job) flushGapLocked() {
	if j.gap.Events > 0 {
		g := j.gap
		j.queue = append(j.queue, Event{Gap: &g})
		j.gap = Gap{}
	}
}

func (j *Job) wake() {
	select {
	case j.notify <- struct{}{}:
	default:
	}
}

// finish ends the job with a result or an error, once; later calls do nothing.
func (j *Job) finish(res *wire.Result, err error, last Event) {
	j.mu.Lock()
	if j.result != nil || j.err != nil {
		j.mu.Unlock()
		return
	}
	j.result, j.err = res, err
	if res != nil {
		j.flushGapLocked()
		j.queue = append(j.queue, last)
	}
	close(j.done)
	j.mu.Unlock()
	j.wake()
}
