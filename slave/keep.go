package slave

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"kiln/transport"
	"kiln/transport/wire"
)

// Defaults of what a slave keeps through a lost session.
const (
	// DefaultGrace is how long a slave keeps running its jobs while the
	// master is away, and keeps a finished job's output and result to
	// report again when it reconnects.
	DefaultGrace = 60 * time.Second
)

// keeper owns the jobs of a slave across its sessions with the master. A
// job that started executing survives the loss of the session it was
// assigned on for the grace period: it keeps running, its Output (every
// message of the attempt) and Result are kept, and when a session is up
// again they are reported on it (Register.Held, then the messages again
// from the first). A job that had not started (waiting for its files or a
// slot) is abandoned with its session, as before: its files travelled on
// that session. Safe for concurrent use; it sends on the current session
// under its lock, so that a replay and new messages keep their order.
type keeper struct {
	grace    time.Duration // <= 0: jobs are abandoned with their session
	maxBytes int64         // output kept for replay, all jobs
	perOwner int64         // output kept for replay, the jobs of one client key
	log      *slog.Logger

	mu     sync.Mutex
	sess   *transport.Session // the session jobs report on; nil while away
	jobs   map[string]*kept
	bytes  int64            // output kept for replay, over all jobs
	owners map[string]int64 // output kept for replay, by Assign.Owner
}

// kept is one job of the keeper.
type kept struct {
	a         wire.Assign
	cancel    context.CancelFunc
	started   bool // executing: survives a lost session
	abandoned bool // dropped by the keeper: its goroutine reports nothing
	msgs      []wire.Output
	bytes     int64
	overflow  bool // its output did not fit: it cannot be replayed
	result    *wire.Result
	endedAt   time.Time
	lostAt    time.Time // when its session was lost; zero while one is up
	// corked, set once the job ran, holds its last Output messages in
	// pending (encoded, for the current session) so that they leave with
	// its Result in one write (see cork).
	corked  bool
	pending []wire.Envelope
}

func newKeeper(grace time.Duration, maxBytes, perOwner int64, log *slog.Logger) *keeper {
	return &keeper{grace: grace, maxBytes: maxBytes, perOwner: perOwner, log: log, jobs: map[string]*kept{}, owners: map[string]int64{}}
}

// add registers an assignment; an earlier attempt of the same job is
// abandoned (a newer attempt replaces it).
func (k *keeper) add(a wire.Assign, cancel context.CancelFunc) *kept {
	j := &kept{a: a, cancel: cancel}
	k.mu.Lock()
	defer k.mu.Unlock()
	if old := k.jobs[a.JobID]; old != nil {
		k.dropLocked(old)
	}
	k.jobs[a.JobID] = j
	return j
}

// start marks j as executing; false if it was abandoned meanwhile.
func (k *keeper) start(j *kept) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	j.started = true
	return !j.abandoned
}

// output keeps one Output message for replay and sends it on the current
// session, if any. It reports whether the job is still wanted.
func (k *keeper) output(j *kept, m wire.Output) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if j.abandoned {
		return false
	}
	if !j.overflow {
		n := int64(len(m.Data) + len(m.Key) + 64)
		if k.bytes+n > k.maxBytes || k.owners[j.a.Owner]+n > k.perOwner {
			j.overflow = true
			k.releaseLocked(j)
			if k.sess == nil {
				// Away: the job could only be reported with a gap in
				// its output; it is dropped as with a lost session.
				k.log.Warn("job output over what the slave keeps for replay, or its client's share, while the master is away; job dropped", "job", j.a.JobID)
				k.dropLocked(j)
				return false
			}
			k.log.Warn("job output over what the slave keeps for replay, or its client's share; it will not survive a lost session", "job", j.a.JobID)
		} else {
			j.msgs = append(j.msgs, m)
			j.bytes += n
			k.bytes += n
			k.owners[j.a.Owner] += n
		}
	}
	if k.sess == nil {
		return true
	}
	if j.corked {
		e, err := wire.Encode(wire.MsgOutput, 0, &m)
		if err != nil {
			k.log.Debug("output not encoded", "job", m.JobID, "err", err)
			return true
		}
		j.pending = append(j.pending, e)
		return true
	}
	if err := k.sess.Send(wire.MsgOutput, 0, &m); err != nil {
		k.log.Debug("output not sent", "job", m.JobID, "err", err)
	}
	return true
}

// cork holds j's further Output messages until its Result: a job that
// ran ends with a few (a sealed job's last message of each stream), and
// sent with the Result in one write they cost one TLS record and one
// system call instead of one each. Called once the job's run is over, so
// that nothing waits behind it.
func (k *keeper) cork(j *kept) {
	k.mu.Lock()
	defer k.mu.Unlock()
	j.corked = true
}

// finish keeps j's Result and sends it on the current session, if any.
func (k *keeper) finish(j *kept, res *wire.Result, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if j.abandoned {
		return
	}
	j.result, j.endedAt, j.cancel = res, now, func() {}
	pending := j.pending
	j.corked, j.pending = false, nil
	if k.sess == nil {
		k.log.Info("job done while the master is away; result kept", "job", j.a.JobID, "status", res.Status)
		return
	}
	e, err := wire.Encode(wire.MsgResult, 0, res)
	if err == nil {
		err = k.sess.SendEnvelopes(append(pending, e))
	}
	if err != nil {
		k.log.Warn("result not sent; kept for the next session", "job", j.a.JobID, "err", err)
		return
	}
	k.log.Info("job done", "job", j.a.JobID, "status", res.Status, "wall_ms", res.WallMs, "cached", res.Cached)
}

// cancel stops job id at the master's request; its goroutine then
// reports a cancelled Result.
func (k *keeper) cancel(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	j := k.jobs[id]
	if j == nil {
		return false
	}
	j.cancel()
	return true
}

// forget drops j once its goroutine has ended without a result to keep.
func (k *keeper) forget(j *kept) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if j.result == nil {
		k.dropLocked(j)
	}
}

// releaseLocked lets go of the output j keeps for replay.
func (k *keeper) releaseLocked(j *kept) {
	k.bytes -= j.bytes
	if k.owners[j.a.Owner] -= j.bytes; k.owners[j.a.Owner] <= 0 {
		delete(k.owners, j.a.Owner)
	}
	j.msgs, j.bytes = nil, 0
}

func (k *keeper) dropLocked(j *kept) {
	j.abandoned = true
	j.cancel()
	k.releaseLocked(j)
	if k.jobs[j.a.JobID] == j {
		delete(k.jobs, j.a.JobID)
	}
}

// running counts the jobs not finished.
func (k *keeper) running() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, j := range k.jobs {
		if j.result == nil {
			n++
		}
	}
	return n
}

// detach is called when sess has ended: jobs that had not started are
// abandoned, the others are kept for the grace period.
func (k *keeper) detach(sess *transport.Session, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.sess != sess {
		return
	}
	k.sess = nil
	for _, j := range k.jobs {
		j.pending = nil // in j.msgs: replayed on the next session
		switch {
		case k.grace <= 0 || !j.started || j.overflow:
			k.dropLocked(j)
		default:
			j.lostAt = now
			if j.result == nil {
				k.log.Info("master away; job keeps running", "job", j.a.JobID, "grace", k.grace)
			}
		}
	}
}

// attach makes sess the session jobs report on: it sends reg with the
// held jobs, then every held job's Output again from the first message,
// and its Result if it has one.
func (k *keeper) attach(sess *transport.Session, reg wire.Register) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	ids := make([]string, 0, len(k.jobs))
	for id := range k.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > wire.MaxHeld {
		for _, id := range ids[wire.MaxHeld:] {
			k.dropLocked(k.jobs[id])
		}
		ids = ids[:wire.MaxHeld]
	}
	for _, id := range ids {
		j := k.jobs[id]
		reg.Held = append(reg.Held, wire.HeldJob{JobID: id, Attempt: j.a.Attempt, Done: j.result != nil})
	}
	if err := sess.Send(wire.MsgRegister, 0, &reg); err != nil {
		return err
	}
	k.sess = sess
	for _, id := range ids {
		j := k.jobs[id]
		j.lostAt = time.Time{}
		for i := range j.msgs {
			if err := sess.Send(wire.MsgOutput, 0, &j.msgs[i]); err != nil {
				return err
			}
		}
		if j.result != nil {
			if err := sess.Send(wire.MsgResult, 0, j.result); err != nil {
				return err
			}
		}
	}
	if len(ids) > 0 {
		k.log.Info("reported the jobs kept while the master was away", "jobs", len(ids))
	}
	return nil
}

// sweep ends what the grace period no longer covers: running jobs whose
// session was lost longer ago are cancelled and forgotten, finished ones
// are forgotten that long after their end.
func (k *keeper) sweep(now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, j := range k.jobs {
		lost := !j.lostAt.IsZero() && now.Sub(j.lostAt) > k.grace
		if j.result == nil && lost {
			k.log.Warn("master away longer than the grace period; job cancelled", "job", j.a.JobID, "grace", k.grace)
			k.dropLocked(j)
		} else if j.result != nil && now.Sub(j.endedAt) > k.grace {
			k.dropLocked(j)
		}
	}
}

// sweepLoop sweeps until ctx ends.
func (k *keeper) sweepLoop(ctx context.Context, now func() time.Time) {
	every := min(max(k.grace/4, 50*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.sweep(now())
		}
	}
}
