package state

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"kiln/transport/wire"
)

// Machine is the state machine: the job and slave tables and the id
// sequence. It implements raft.FSM and raft.BatchingFSM. Safe for
// concurrent use; records it returns are shared and must not be modified.
type Machine struct {
	mu     sync.RWMutex
	jobs   map[string]*Job
	slaves map[string]*Slave
	seq    uint64 // last job sequence number handed out; never goes back
	endSeq uint64 // last end counter handed out
	bytes  int64  // sum of the records' size()
	live   int    // unfinished jobs
	ended  []*Job // ended jobs in EndSeq order
	// held is, per owner with ended jobs, what the size cap can take
	// back: those jobs' EndSeqs in order and their bytes (see evictLocked).
	held map[string]*holding
	// clean: the last command applied is a KindStop.
	clean bool
}

// holding is one owner's ended jobs: their EndSeqs in order and the sum
// of their size().
type holding struct {
	ends  []uint64
	bytes int64
}

// NewMachine returns an empty state.
func NewMachine() *Machine {
	return &Machine{jobs: map[string]*Job{}, slaves: map[string]*Slave{}, held: map[string]*holding{}}
}

// Response is what Apply returns for one command: the job record after
// the command (Submit, Assign, Result, Requeue, Cancel, Deliver), or the
// reason it was refused.
type Response struct {
	Job *Job
	Err error
}

// Apply runs one command. It is deterministic: see the package doc.
func (m *Machine) Apply(c *Command) Response {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applyLocked(c)
}

func (m *Machine) applyLocked(c *Command) Response {
	m.clean = c.Kind == KindStop
	switch c.Kind {
	case KindStop:
		return Response{}
	case KindRestart:
		var queued []string
		for id, j := range m.jobs {
			if j.State == Queued {
				queued = append(queued, id)
			}
		}
		for _, id := range queued {
			m.change(id, func(j *Job) error { j.Attempt++; return nil })
		}
		return Response{}
	case KindSubmit:
		return m.submitLocked(c)
	case KindAssign:
		return m.change(c.Job, func(j *Job) error {
			if j.State != Queued || j.Attempt != c.Attempt {
				return stale(j, c)
			}
			j.State, j.Slave, j.Assigned = Assigned, c.Slave, c.Now
			return nil
		})
	case KindResult:
		return m.resultLocked(c)
	case KindRequeue:
		return m.change(c.Job, func(j *Job) error {
			if j.State != Assigned || j.Attempt != c.Attempt {
				return stale(j, c)
			}
			j.State, j.Slave, j.Assigned, j.Attempt = Queued, "", time.Time{}, j.Attempt+1
			return nil
		})
	case KindCancel:
		return m.cancelLocked(c)
	case KindDeliver:
		return m.change(c.Job, func(j *Job) error {
			if !j.Ended() {
				return fmt.Errorf("%w: job %s has not ended", ErrStale, j.ID)
			}
			j.Delivered = true
			return nil
		})
	case KindWraps:
		return m.change(c.Job, func(j *Job) error {
			if j.Ended() || !j.Submit.Sealed || len(j.Wraps) > 0 {
				return fmt.Errorf("%w: wraps for %s, which is %s (sealed %v, %d wraps already)", ErrStale, j.ID, j.State, j.Submit.Sealed, len(j.Wraps))
			}
			j.Wraps = c.Wraps
			return nil
		})
	case KindDrain, KindUndrain, KindQuarantine:
		m.slaveLocked(c)
		return Response{}
	case KindExpire:
		m.expireLocked(c.Now.Add(-c.Retention))
		if c.MaxBytes > 0 {
			m.evictLocked(c.MaxBytes)
		}
		return Response{}
	}
	return Response{Err: fmt.Errorf("%w: unknown kind %d", ErrBadCommand, c.Kind)}
}

func stale(j *Job, c *Command) error {
	if j.Ended() {
		return fmt.Errorf("%w: %s %s", ErrEnded, c.Kind, j.ID)
	}
	return fmt.Errorf("%w: %s %s attempt %d, but the job is %s at attempt %d", ErrStale, c.Kind, j.ID, c.Attempt, j.State, j.Attempt)
}

// change copies job id's record, lets f change the copy and publishes it.
func (m *Machine) change(id string, f func(*Job) error) Response {
	old, ok := m.jobs[id]
	if !ok {
		return Response{Err: fmt.Errorf("%w: %s", ErrNotFound, id)}
	}
	j := *old
	if err := f(&j); err != nil {
		return Response{Err: err}
	}
	m.put(old, &j)
	return Response{Job: &j}
}

// put replaces old (nil for a new job) by j and keeps the counters.
func (m *Machine) put(old, j *Job) {
	if old != nil {
		m.bytes -= old.size()
		if !old.Ended() {
			m.live--
		}
	}
	m.bytes += j.size()
	if !j.Ended() {
		m.live++
	} else if old == nil || !old.Ended() {
		m.endSeq++
		j.EndSeq = m.endSeq
	}
	m.jobs[j.ID] = j
	if j.Ended() {
		if old != nil && old.Ended() {
			m.ended[m.endedIndex(j.EndSeq)] = j
			m.held[j.Owner].bytes += j.size() - old.size()
		} else {
			m.ended = append(m.ended, j)
			m.hold(j)
		}
	}
}

// hold counts a newly ended job (the last EndSeq) in its owner's holding.
func (m *Machine) hold(j *Job) {
	h := m.held[j.Owner]
	if h == nil {
		h = &holding{}
		m.held[j.Owner] = h
	}
	h.ends = append(h.ends, j.EndSeq)
	h.bytes += j.size()
}

// unhold takes an ended job, the oldest of its owner's, out of the
// holding.
func (m *Machine) unhold(j *Job) {
	h := m.held[j.Owner]
	h.ends = h.ends[1:]
	h.bytes -= j.size()
	if len(h.ends) == 0 {
		delete(m.held, j.Owner)
	}
}

// endedIndex finds the ended entry with this EndSeq (m.ended is sorted).
func (m *Machine) endedIndex(endSeq uint64) int {
	i, _ := slices.BinarySearchFunc(m.ended, endSeq, func(j *Job, s uint64) int { return cmp.Compare(j.EndSeq, s) })
	return i
}

func (m *Machine) submitLocked(c *Command) Response {
	if c.New == nil {
		return Response{Err: fmt.Errorf("%w: submit without a job", ErrBadCommand)}
	}
	if c.MaxJobs > 0 && m.live >= c.MaxJobs {
		return Response{Err: fmt.Errorf("%w: %d unfinished jobs", ErrQueueFull, m.live)}
	}
	j := *c.New
	j.Seq = m.seq + 1
	j.ID = fmt.Sprintf("J%d", j.Seq)
	j.State, j.Attempt, j.Created = Queued, 1, c.Now
	j.Slave, j.CancelRequested, j.Assigned, j.Finished = "", false, time.Time{}, time.Time{}
	j.Result, j.Output, j.Delivered, j.EndSeq = nil, nil, false, 0
	if c.MaxBytes > 0 {
		m.evictLocked(c.MaxBytes - j.size())
		if m.bytes+j.size() > c.MaxBytes {
			return Response{Err: fmt.Errorf("%w: %d bytes held by unfinished jobs, %d more asked, cap %d", ErrFull, m.bytes, j.size(), c.MaxBytes)}
		}
	}
	m.seq = j.Seq
	m.put(nil, &j)
	return Response{Job: &j}
}

func (m *Machine) resultLocked(c *Command) Response {
	if c.Result == nil {
		return Response{Err: fmt.Errorf("%w: result without a result", ErrBadCommand)}
	}
	return m.change(c.Job, func(j *Job) error {
		if j.Ended() || j.Attempt != c.Attempt {
			return stale(j, c)
		}
		r := *c.Result
		j.State, j.Finished, j.Result, j.Output = Done, c.Now, &r, c.Output
		if r.Status != wire.StatusOK {
			j.State = Failed
		}
		return nil
	})
}

func (m *Machine) cancelLocked(c *Command) Response {
	return m.change(c.Job, func(j *Job) error {
		switch {
		case j.Ended():
			return stale(j, c)
		case j.State == Queued:
			j.State, j.Finished = Failed, c.Now
			j.Result = &wire.Result{JobID: j.ID, Attempt: j.Attempt, Status: wire.StatusCancelled,
				Language: j.Submit.Language, Detail: c.Reason}
		default:
			j.CancelRequested = true
		}
		return nil
	})
}

func (m *Machine) slaveLocked(c *Command) {
	old := m.slaves[c.Slave]
	s := Slave{Name: c.Slave}
	if old != nil {
		s = *old
	}
	switch c.Kind {
	case KindDrain:
		s.Drained = true
	case KindUndrain:
		s.Drained = false
	case KindQuarantine:
		if !c.Until.IsZero() {
			s.Strikes++
		}
		s.QuarantinedUntil = c.Until
	}
	if s == (Slave{Name: c.Slave}) {
		delete(m.slaves, c.Slave)
		return
	}
	m.slaves[c.Slave] = &s
}

// expireLocked drops the ended jobs that finished before cutoff, oldest
// EndSeq first, up to the first that did not.
func (m *Machine) expireLocked(cutoff time.Time) {
	m.dropEnded(func(j *Job) bool { return j.Finished.Before(cutoff) })
}

// evictLocked drops ended jobs while the state holds more than maxBytes:
// each time the oldest of the owner whose ended jobs hold the most bytes
// (ties: the smallest owner), so that one client key filling the cap
// loses its own results first, not the other keys' (issue 12 review).
// The choice depends only on the state: no clock, no map order.
func (m *Machine) evictLocked(maxBytes int64) {
	dropped := false
	for m.bytes > maxBytes && len(m.held) > 0 {
		var owner string
		var top *holding
		for o, h := range m.held {
			if top == nil || h.bytes > top.bytes || h.bytes == top.bytes && o < owner {
				owner, top = o, h
			}
		}
		j := m.ended[m.endedIndex(top.ends[0])]
		m.unhold(j)
		delete(m.jobs, j.ID)
		m.bytes -= j.size()
		dropped = true
	}
	if dropped {
		m.ended = slices.DeleteFunc(m.ended, func(j *Job) bool { return m.jobs[j.ID] != j })
	}
}

// dropEnded drops ended jobs in EndSeq order while drop says so.
func (m *Machine) dropEnded(drop func(*Job) bool) {
	n := 0
	for _, j := range m.ended {
		if !drop(j) {
			break
		}
		delete(m.jobs, j.ID)
		m.bytes -= j.size()
		m.unhold(j)
		n++
	}
	if n > 0 {
		m.ended = slices.Delete(m.ended, 0, n)
	}
}

// Job returns the record of job id.
func (m *Machine) Job(id string) (*Job, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	j, ok := m.jobs[id]
	return j, ok
}

// Jobs returns the records owned by owner (every record for ""), in id
// order.
func (m *Machine) Jobs(owner string) []*Job {
	return m.filter(func(j *Job) bool { return owner == "" || j.Owner == owner })
}

// Unfinished returns the jobs that have not ended, in id order: the
// queue and the jobs on slaves, which a new leader takes over.
func (m *Machine) Unfinished() []*Job {
	return m.filter(func(j *Job) bool { return !j.Ended() })
}

func (m *Machine) filter(keep func(*Job) bool) []*Job {
	m.mu.RLock()
	var out []*Job
	for _, j := range m.jobs {
		if keep(j) {
			out = append(out, j)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Job) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

// Slaves returns the slave records (drained or quarantined slaves), by name.
func (m *Machine) Slaves() []Slave {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.slavesLocked()
}

func (m *Machine) slavesLocked() []Slave {
	out := make([]Slave, 0, len(m.slaves))
	for _, s := range m.slaves {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b Slave) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Clean reports whether the last command applied is a KindStop: the
// store was closed cleanly, with no command proposed and not written.
func (m *Machine) Clean() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.clean
}

// queued reports whether a job is queued.
func (m *Machine) queued() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, j := range m.jobs {
		if j.State == Queued {
			return true
		}
	}
	return false
}

// Stats is the size of the state.
type Stats struct {
	Jobs       int    // records held
	Unfinished int    // of which not ended
	Bytes      int64  // payload, wraps and output held
	Seq        uint64 // last job sequence number handed out
}

// Stats returns the size of the state.
func (m *Machine) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{Jobs: len(m.jobs), Unfinished: m.live, Bytes: m.bytes, Seq: m.seq}
}
