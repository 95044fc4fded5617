package master

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"kiln/master/state"
	"kiln/transport/wire"
)

// The master's durable state (issue 12). With Config.Store set, every job
// is a record in the raft state machine of master/state, written at
// Submit (before Accepted), at Assign, Requeue and Cancel (proposed under
// s.mu, so in order, not waited for; Assign and Deliver lazily, riding in
// the next entry: see proposeLazyLocked), and at its end (the Result with
// the output, written before the client is told); drains too. A restart
// restores the unfinished jobs: queued ones queue again, assigned ones
// wait a grace period for their slave to report them (Register.held),
// then run again. Clients find their jobs again with Attach and ListJobs.
// Sessions, flights (files in transit, wraps asked, output routes) and
// load reports stay in memory.
//
// Without a store the master keeps nothing beyond its sessions, as
// before: a client that leaves takes its jobs with it.

// Defaults of the durable state.
const (
	// DefaultRetention is how long ended jobs are kept for Attach and
	// ListJobs.
	DefaultRetention = 24 * time.Hour
	// DefaultStateMaxBytes bounds the payload and output the state keeps;
	// ended jobs go first, the oldest of the client key whose ended jobs
	// hold the most bytes (so one key cannot push out the others'
	// results), and a Submit that does not fit even then is refused busy.
	DefaultStateMaxBytes = 4 << 30
	// DefaultReclaimAfter is how long a restored job that was on a slave
	// waits for that slave to report it before it runs again.
	DefaultReclaimAfter = 90 * time.Second
)

// durable reports whether the master keeps its jobs in a store.
func (s *Server) durable() bool { return s.cfg.Store != nil }

// proposeLocked proposes c to the store, if any, stamped with the time.
// s.mu is held, so that the commands of one job go in order.
func (s *Server) proposeLocked(c *state.Command) *state.Future {
	if s.cfg.Store == nil {
		return nil
	}
	c.Now = s.cfg.Now()
	return s.cfg.Store.Propose(c)
}

// proposeLazyLocked is proposeLocked for Assign and Deliver, which nobody
// waits for: they cause no log write of their own but ride in the next
// entry (state.Store.ProposeLazy, at most state.Config.LazyDelay later).
// A crash may lose them: a lost Deliver only means the result is marked
// delivered again at the next Attach; a lost Assign leaves the job queued
// in the log at the attempt its slave may be running, which the state's
// KindRestart moves to the next attempt at the next Open, so that the
// restarted job never runs under an attempt number a slave may hold
// (reclaim cancels the slave's copy as stale). s.mu is held.
func (s *Server) proposeLazyLocked(c *state.Command) *state.Future {
	if s.cfg.Store == nil {
		return nil
	}
	c.Now = s.cfg.Now()
	return s.cfg.Store.ProposeLazy(c)
}

// waitLogged logs f's failure when it comes (on the store's goroutine, so
// that nothing of the master waits for a lazy command): for commands
// whose outcome changes nothing the master does next.
func (s *Server) waitLogged(f *state.Future, what, job string) {
	if f == nil {
		return
	}
	f.OnDone(func(_ *state.Job, err error) {
		if err != nil && !errors.Is(err, state.ErrEnded) {
			s.log.Warn("durable state not updated", "what", what, "job", job, "err", err)
		}
	})
}

// proposeSubmit proposes the record of a job about to be queued and
// returns without waiting for its write (see submitWritten). A refusal
// before the write (the disk is full) comes as an Error for the client.
// s.mu is not held.
func (s *Server) proposeSubmit(cc *clientConn, u *upload) (*state.Future, *wire.Error) {
	if err := s.cfg.Store.CheckSpace(); err != nil {
		return nil, &wire.Error{Code: wire.CodeBusy, Message: err.Error(), RetryAfterMs: s.retryAfterMs()}
	}
	rec := &state.Job{Owner: cc.id.Fingerprint, Name: cc.id.Name, Submit: u.submit,
		Source: u.source.bytes(), Stdin: u.stdin.bytes(), SrcSum: u.srcSum, StdinSum: u.stdinSum}
	return s.cfg.Store.Propose(&state.Command{Kind: state.KindSubmit, Now: s.cfg.Now(),
		New: rec, MaxBytes: s.cfg.StateMaxBytes}), nil
}

// submitWritten returns the id of a job whose Submit is written, or the
// refusal for the client (store full, not leader, a failed write), from
// the Submit's answer (j, err). s.mu is not held.
func (s *Server) submitWritten(cc *clientConn, j *state.Job, err error) (string, *wire.Error) {
	if err != nil {
		s.log.Warn("job not written to the durable state; refused", "client", cc.id.Name, "err", err)
		return "", &wire.Error{Code: wire.CodeBusy, Message: "the master cannot store the job: " + err.Error(),
			RetryAfterMs: s.retryAfterMs()}
	}
	return j.ID, nil
}

// outputChunks returns the output of an attempt the route buffered for
// the durable record.
func (sc *slaveConn) outputChunks(jobID string) []state.Chunk {
	sc.rmu.Lock()
	defer sc.rmu.Unlock()
	if r := sc.routes[jobID]; r != nil {
		return r.chunks
	}
	return nil
}

// keepChunk buffers one forwarded Output for the durable record, charged
// to the job's client key; false when the key's share is full. rmu is
// held; the route's limit bounds what one attempt keeps.
func (r *route) keepChunk(o *wire.Output) bool {
	if !r.durable {
		return true
	}
	n := int64(len(o.Data) + len(o.Key))
	if r.held != nil && !r.held.take(r.owner, n, r.maxHeld) {
		return false
	}
	r.kept += n
	// Copied: a relayed Output's fields alias the frame it came in,
	// which may be larger than what is charged here.
	r.chunks = append(r.chunks, state.Chunk{Stream: o.Stream, Seq: o.Seq, Data: bytes.Clone(o.Data), Key: bytes.Clone(o.Key)})
	return true
}

// release gives back what the route kept (nil: nothing). rmu is held.
func (r *route) release() {
	if r != nil && r.held != nil && r.kept > 0 {
		r.held.give(r.owner, r.kept)
		r.kept = 0
	}
}

// keyBytes counts bytes by client key: the output routes keep for durable
// records (JobBudget.DurableOutputPerClient).
type keyBytes struct {
	mu sync.Mutex
	m  map[string]int64
}

// take charges n to key unless that takes it past limit.
func (k *keyBytes) take(key string, n, limit int64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m[key]+n > limit {
		return false
	}
	if k.m == nil {
		k.m = map[string]int64{}
	}
	k.m[key] += n
	return true
}

func (k *keyBytes) give(key string, n int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m[key] -= n; k.m[key] <= 0 {
		delete(k.m, key)
	}
}

// total is what all keys hold (tests, metrics).
func (k *keyBytes) total() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var t int64
	for _, n := range k.m {
		t += n
	}
	return t
}

// endForKey ends a job for its client key's doing (its slave is not
// struck): the slave is told to cancel, the client gets status.
func (s *Server) endForKey(sc *slaveConn, jobID string, attempt int, status, detail string) {
	s.mu.Lock()
	j := sc.running[jobID]
	if j == nil || j.slave != sc || j.attempt != attempt || (j.state != wire.StateAssigned && j.state != wire.StateRunning) {
		s.mu.Unlock()
		return
	}
	cancel, client := j.assignSent, j.client
	s.finishLocked(j, status)
	s.mu.Unlock()
	if cancel {
		sc.send(wire.MsgCancel, 0, wire.Cancel{JobID: j.id})
	}
	sc.log.Warn("job ended by the master", "job", j.id, "status", status, "detail", truncate(detail, 200))
	s.ended(client, j, attempt, status, detail)
}

// proposeResultLocked writes a job's end. s.mu is held.
func (s *Server) proposeResultLocked(j *job, r wire.Result, out []state.Chunk) *state.Future {
	return s.proposeLocked(&state.Command{Kind: state.KindResult, Job: j.id, Attempt: r.Attempt, Result: &r, Output: out})
}

// delivered records that a job's Result reached its client.
func (s *Server) delivered(j *job) {
	if s.cfg.Store == nil {
		return
	}
	s.mu.Lock()
	f := s.proposeLazyLocked(&state.Command{Kind: state.KindDeliver, Job: j.id})
	s.mu.Unlock()
	s.waitLogged(f, "deliver", j.id)
}

// restore rebuilds the queue from the store at start: queued jobs queue
// again; jobs that were on a slave wait for it to report them (see
// reclaim) until ReclaimAfter, then run again. Drains come back too, and
// quarantines that have not run out.
func (s *Server) restore() {
	if s.cfg.Store == nil {
		return
	}
	m := s.cfg.Store.Machine()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for _, sl := range m.Slaves() {
		if sl.Drained {
			s.recordLocked(sl.Name).drained = true
		}
		if now.Before(sl.QuarantinedUntil) {
			// Out until the same time; the next quarantine is at least
			// twice as long (the state keeps no finer backoff).
			r := s.recordLocked(sl.Name)
			r.until, r.quarantines = sl.QuarantinedUntil, max(r.quarantines, 1)
			r.reason = "quarantined before the master restarted"
		}
	}
	n := 0
	for _, r := range m.Unfinished() {
		j := jobOfRecord(r)
		s.jobs[j.id] = j
		s.active[j.owner]++
		// Its files are held in memory again, as before the restart:
		// they count against the budgets (see chargeLocked) until the
		// job ends, or its key could upload its share a second time.
		j.held = j.source.size() + j.stdin.size()
		s.held += j.held
		s.heldBy[j.owner] += j.held
		if r.State == state.Assigned {
			j.awaitSlave, j.awaitUntil = r.Slave, now.Add(s.cfg.ReclaimAfter)
			j.state = wire.StateAssigned
		} else {
			s.queue.push(j)
		}
		n++
	}
	st := m.Stats()
	s.log.Info("durable state restored", "unfinished", n, "jobs", st.Jobs, "bytes", st.Bytes, "last_id", fmt.Sprintf("J%d", st.Seq))
}

// jobOfRecord is the in-memory job of a restored record, without client.
func jobOfRecord(r *state.Job) *job {
	wraps := map[string][]byte{}
	for _, w := range r.Wraps {
		wraps[w.Slave] = w.Key
	}
	return &job{id: r.ID, clientID: r.Name, owner: r.Owner, submit: r.Submit,
		source: payload{r.Source}, stdin: payloadOf(r.Stdin), srcSum: r.SrcSum, stdinSum: r.StdinSum,
		state: wire.StateQueued, attempt: r.Attempt, created: r.Created, accepted: true, wraps: wraps}
}

func payloadOf(b []byte) payload {
	if len(b) == 0 {
		return nil
	}
	return payload{b}
}

// reclaim handles the jobs a slave kept through the master's absence,
// reported at Register: one this master restored as on that slave, at
// that attempt, is taken back (its output and result follow); every other
// running one is cancelled on the slave. s.mu is not held.
func (s *Server) reclaim(sc *slaveConn, held []wire.HeldJob) {
	var cancel []string
	s.mu.Lock()
	for _, h := range held {
		j := s.jobs[h.JobID]
		if j == nil || j.awaitSlave != sc.id.Name || j.attempt != h.Attempt {
			if !h.Done {
				cancel = append(cancel, h.JobID)
			}
			continue
		}
		j.awaitSlave, j.awaitUntil = "", time.Time{}
		s.placeLocked(j, sc, s.cfg.Now()) // its record says so already
		j.assignSent, j.state = true, wire.StateRunning
		sc.log.Info("job taken back from the slave that kept it", "job", j.id, "attempt", j.attempt, "done", h.Done)
	}
	s.mu.Unlock()
	for _, id := range cancel {
		sc.send(wire.MsgCancel, 0, wire.Cancel{JobID: id})
	}
}

// checkReclaims runs again the restored jobs whose slave did not come
// back to report them in time.
func (s *Server) checkReclaims() {
	now := s.cfg.Now()
	var notes []func()
	s.mu.Lock()
	for _, j := range s.jobs {
		if j.awaitSlave == "" || now.Before(j.awaitUntil) {
			continue
		}
		s.log.Warn("restored job not reported by its slave in time; running it again", "job", j.id, "slave", j.awaitSlave)
		f := s.proposeLocked(&state.Command{Kind: state.KindRequeue, Job: j.id, Attempt: j.attempt})
		s.waitLogged(f, "requeue", j.id)
		j.slaveWas, j.awaitSlave, j.awaitUntil = j.awaitSlave, "", time.Time{}
		j.attempt++
		j.state = wire.StateQueued
		s.queue.pushFront(j)
		if c := j.client; c != nil {
			st := wire.JobState{JobID: j.id, State: wire.StateRequeued, Attempt: j.attempt,
				Detail: fmt.Sprintf("slave %s did not come back; running the job again", j.slaveWas)}
			notes = append(notes, func() { c.send(wire.MsgJobState, 0, st) })
		}
	}
	s.mu.Unlock()
	for _, n := range notes {
		n()
	}
	if len(notes) > 0 {
		s.wake()
	}
}

// expireLoop drops ended jobs past the retention window, once a minute.
func (s *Server) expireLoop(ctx context.Context) {
	if s.cfg.Store == nil {
		return
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.mu.Lock()
			f := s.proposeLocked(&state.Command{Kind: state.KindExpire, Retention: s.cfg.Retention, MaxBytes: s.cfg.StateMaxBytes})
			s.mu.Unlock()
			s.waitLogged(f, "expire", "")
		}
	}
}

// storedWrap returns the key a sealed job's client wrapped ahead for sc:
// after Accepted (Wraps, bound to the job id: nonce is nil) or in its
// Submit (bound to nonce, used only for a slave that announced
// wire.FeatureSubmitWraps, and only if the wrap names no sealing key or
// sc's: a wrap made for an older certificate of the same name is not
// used). s.mu is held.
func (j *job) storedWrap(sc *slaveConn) (key, nonce []byte) {
	if k := j.wraps[sc.id.Name]; k != nil {
		return k, nil
	}
	if len(j.submit.Wraps) == 0 || !wire.HasFeature(sc.hello.Features, wire.FeatureSubmitWraps) {
		return nil, nil
	}
	for _, w := range j.submit.Wraps {
		if w.Slave == sc.id.Name && (len(w.SealKey) == 0 || bytes.Equal(w.SealKey, sc.sealKey)) {
			return w.Key, j.submit.WrapNonce
		}
	}
	return nil, nil
}

// sealSlavesLocked lists the connected slaves with a sealing key that run
// lang, for a client wrapping a job's key ahead. s.mu is held.
func (s *Server) sealSlavesLocked(lang string) []wire.SealSlave {
	var out []wire.SealSlave
	for sc := range s.slaves {
		if sc.registered && sc.sealKey != nil && sc.langs[lang] && len(out) < wire.MaxWraps {
			out = append(out, wire.SealSlave{Name: sc.id.Name, Cert: sc.cert.Raw})
		}
	}
	slices.SortFunc(out, func(a, b wire.SealSlave) int { return bytes.Compare([]byte(a.Name), []byte(b.Name)) })
	return out
}
