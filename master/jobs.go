package master

import (
	"fmt"
	"time"

	"kiln/transport/wire"
)

// job is one submitted program, from Submit to Result.
type job struct {
	id       string
	client   *clientConn // nil once the client has gone
	clientID string      // the client's name, kept for listings
	owner    string      // the client key's fingerprint, sent in Assign
	submit   wire.Submit
	source   []byte
	stdin    []byte
	srcSum   []byte
	stdinSum []byte

	state    string // wire.StateQueued, StateAssigned, StateRunning, StateDone, StateFailed
	slave    *slaveConn
	attempt  int
	created  time.Time
	assigned time.Time
	finished time.Time
	status   string // the result status once done
	held     int64  // bytes of source and stdin counted in Server.held

	strandedSince time.Time // when it was first seen queued with no slave for its language
	slaveWas      string    // name of the slave that ran it

	// A sealed job's pending WrapRequest: the attempt it is for and where
	// the client's Wrapped goes (capacity 1, one sender: whoever clears it).
	wrapAttempt int
	wrapCh      chan wire.Wrapped

	// assignSent is set once the current attempt's Assign is queued for
	// its slave; a Cancel before that is kept in cancelPending and sent by
	// sendJob after the Assign, so that it cannot overtake it.
	assignSent    bool
	cancelPending bool

	// accepted is set once the client's Accepted is queued: only then may
	// the job be dispatched, so that no message about it overtakes Accepted.
	accepted bool
}

// JobInfo is a job as listings show it.
type JobInfo struct {
	ID       string    `json:"id"`
	Client   string    `json:"client"`
	Language string    `json:"language"`
	File     string    `json:"file"`
	Slave    string    `json:"slave"`
	State    string    `json:"state"`
	Status   string    `json:"status"`
	Attempt  int       `json:"attempt"`
	Created  time.Time `json:"created"`
	Finished time.Time `json:"finished,omitzero"`
}

func (j *job) info() JobInfo {
	slave := j.slaveWas
	if j.slave != nil {
		slave = j.slave.id.Name
	}
	return JobInfo{
		ID: j.id, Client: j.clientID, Language: j.submit.Language, File: j.submit.FileName,
		Slave: slave, State: j.state, Status: j.status, Attempt: j.attempt,
		Created: j.created, Finished: j.finished,
	}
}

// enqueue admits a fully uploaded job or says why not. It sends the client
// Accepted or Error for request reqID.
func (s *Server) enqueue(cc *clientConn, reqID uint64, u *upload) {
	s.mu.Lock()
	lang := u.submit.Language
	if cands := s.candidatesLocked(); !supports(candidatesFor(cands, u.submit.Sealed), lang) {
		s.releaseLocked(&u.held)
		drained := false
		for _, c := range candidatesFor(cands, u.submit.Sealed) {
			drained = drained || (c.drained && c.languages[lang])
		}
		s.mu.Unlock()
		msg := fmt.Sprintf("no connected slave runs %s", lang)
		switch {
		case drained:
			msg = fmt.Sprintf("every connected slave that runs %s is drained by an admin; retry later", lang)
		case u.submit.Sealed && supports(cands, lang):
			msg = fmt.Sprintf("no connected slave with a sealing key runs %s (submit unsealed, or re-issue the slaves' bundles)", lang)
		}
		cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeNoSlave, Message: msg})
		return
	}
	if len(s.queue) >= s.cfg.Limits.MaxQueue {
		s.releaseLocked(&u.held)
		s.mu.Unlock()
		cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeBusy,
			Message: fmt.Sprintf("queue full (%d jobs waiting)", s.cfg.Limits.MaxQueue), RetryAfterMs: 1000})
		return
	}
	s.nextJob++
	j := &job{
		id: fmt.Sprintf("J%d", s.nextJob), client: cc, clientID: cc.id.Name, owner: cc.id.Fingerprint, submit: u.submit,
		source: u.source, stdin: u.stdin, srcSum: u.srcSum, stdinSum: u.stdinSum,
		state: wire.StateQueued, attempt: 1, created: s.cfg.Now(), held: u.held,
	}
	s.jobs[j.id] = j
	cc.jobs[j.id] = j
	cc.submitted++
	s.queue = append(s.queue, j)
	pos := len(s.queue)
	s.mu.Unlock()
	cc.log.Info("job queued", "job", j.id, "lang", lang, "file", u.submit.FileName, "bytes", len(u.source))
	cc.send(wire.MsgAccepted, reqID, wire.Accepted{JobID: j.id, Position: pos})
	cc.send(wire.MsgJobState, 0, wire.JobState{JobID: j.id, State: wire.StateQueued, Attempt: 1})
	s.mu.Lock()
	j.accepted = true
	s.mu.Unlock()
	s.wake()
}

// wake asks the dispatcher to look at the queue.
func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// candidatesLocked builds the scheduler's view of the slaves. s.mu is held.
func (s *Server) candidatesLocked() []*candidate {
	cands := make([]*candidate, 0, len(s.slaves))
	for sc := range s.slaves {
		if sc.registered {
			cands = append(cands, sc.candidate())
		}
	}
	return cands
}

// candidatesFor returns the candidates that may take a job: for a sealed
// job, only slaves with a sealing key bound to their certificate. The
// result shares the candidates, so in-flight counts stay in step.
func candidatesFor(cands []*candidate, sealed bool) []*candidate {
	if !sealed {
		return cands
	}
	var out []*candidate
	for _, c := range cands {
		if c.slave.sealKey != nil {
			out = append(out, c)
		}
	}
	return out
}

// assignment is a job placed on a slave, to be sent outside the lock.
type assignment struct {
	j       *job
	sc      *slaveConn
	attempt int
	// The job's files, read under s.mu: finishLocked clears them on the
	// job while sendJob may still be streaming.
	source, stdin []byte
}

// dispatch places every queued job that some slave has room for. Jobs whose
// language has no free slot stay queued without blocking others behind them.
func (s *Server) dispatch() {
	s.mu.Lock()
	cands := s.candidatesLocked()
	var placed []assignment
	rest := s.queue[:0]
	sealing := candidatesFor(cands, true)
	for _, j := range s.queue {
		if !j.accepted {
			rest = append(rest, j)
			continue
		}
		cs := cands
		if j.submit.Sealed {
			cs = sealing
		}
		i := pick(cs, j.submit.Language)
		if i < 0 {
			rest = append(rest, j)
			continue
		}
		sc := cs[i].slave
		cs[i].inFlight++
		cs[i].lastAssigned = s.cfg.Now()
		sc.lastAssigned = cs[i].lastAssigned
		sc.running[j.id] = j
		j.slave, j.state, j.assigned = sc, wire.StateAssigned, s.cfg.Now()
		j.assignSent = false
		placed = append(placed, assignment{j, sc, j.attempt, j.source, j.stdin})
	}
	clear(s.queue[len(rest):])
	s.queue = rest
	s.mu.Unlock()
	for _, a := range placed {
		a.sc.log.Info("job assigned", "job", a.j.id, "client", a.j.clientID, "lang", a.j.submit.Language, "attempt", a.attempt)
		s.cfg.Metrics.dispatched(a.j.assigned.Sub(a.j.created))
		s.goRun(func() { s.sendJob(a) })
	}
}

// sendJob delivers an assignment: the Assign message and the job's files.
// A sealed job first needs its content key wrapped for the slave by the
// client (see wrapFor).
func (s *Server) sendJob(a assignment) {
	j, sc := a.j, a.sc
	s.notify(j, wire.JobState{JobID: j.id, State: wire.StateAssigned, Slave: sc.id.Name, Attempt: a.attempt})
	var wrapped []byte
	if j.submit.Sealed {
		var ok bool
		if wrapped, ok = s.wrapFor(a); !ok {
			return
		}
	}
	sc.send(wire.MsgAssign, 0, wire.Assign{
		JobID: j.id, Attempt: a.attempt, Language: j.submit.Language, FileName: j.submit.FileName,
		SourceSize: int64(len(a.source)), StdinSize: int64(len(a.stdin)), Limits: j.submit.Limits,
		Sealed: j.submit.Sealed, WrappedKey: wrapped, ClientKey: j.submit.ClientKey, Owner: j.owner,
	})
	s.mu.Lock()
	cancelNow := false
	if a.currentLocked() {
		j.assignSent = true
		cancelNow = j.cancelPending
	}
	s.mu.Unlock()
	if cancelNow {
		sc.log.Info("job cancel forwarded", "job", j.id)
		sc.send(wire.MsgCancel, 0, wire.Cancel{JobID: j.id})
	}
	if err := sc.sendFile(j.id, wire.FileSource, j.submit.FileName, a.source, j.srcSum, j.submit.Sealed); err != nil {
		sc.log.Warn("source not delivered", "job", j.id, "err", err)
		sc.close()
		return
	}
	if len(a.stdin) > 0 {
		if err := sc.sendFile(j.id, wire.FileStdin, "stdin", a.stdin, j.stdinSum, j.submit.Sealed); err != nil {
			sc.log.Warn("stdin not delivered", "job", j.id, "err", err)
			sc.close()
			return
		}
	}
	s.mu.Lock()
	current := j.slave == sc && j.attempt == a.attempt && j.state == wire.StateAssigned
	if current {
		j.state = wire.StateRunning
	}
	s.mu.Unlock()
	if current {
		s.notify(j, wire.JobState{JobID: j.id, State: wire.StateRunning, Slave: sc.id.Name, Attempt: a.attempt})
	}
}

// wrapFor asks the client of a sealed job to wrap its content key for the
// assigned slave, sending the slave's certificate so the client can check
// the key, and waits for the answer. It returns the wrapped key, or false
// when the assignment is over: the slave went away (the job is re-queued,
// and the next assignment asks again), or the job ended here because the
// client refused, cancelled, left or did not answer within WrapTimeout.
func (s *Server) wrapFor(a assignment) ([]byte, bool) {
	j, sc := a.j, a.sc
	ch := make(chan wire.Wrapped, 1)
	s.mu.Lock()
	cc := j.client
	if cc == nil || !a.currentLocked() {
		s.mu.Unlock()
		s.endAssignment(a, wire.StatusCancelled, "the client left before the job ran")
		return nil, false
	}
	j.wrapCh, j.wrapAttempt = ch, a.attempt
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if j.wrapCh == ch {
			j.wrapCh = nil
		}
		s.mu.Unlock()
	}()
	cc.send(wire.MsgWrapRequest, 0, wire.WrapRequest{JobID: j.id, Slave: sc.id.Name,
		SealKey: sc.sealKey, SlaveCert: sc.cert.Raw, Attempt: a.attempt})
	t := time.NewTimer(s.cfg.WrapTimeout)
	defer t.Stop()
	select {
	case w := <-ch:
		switch {
		case w.Refused != "":
			sc.log.Warn("client refused to wrap a job key for this slave", "job", j.id, "client", cc.id.Name, "reason", w.Refused)
			s.endAssignment(a, wire.StatusInternalError, "client refused to wrap the key: "+w.Refused)
		case len(w.WrappedKey) == 0:
			s.endAssignment(a, wire.StatusCancelled, "cancelled before it ran")
		default:
			return w.WrappedKey, true
		}
	case <-t.C:
		s.endAssignment(a, wire.StatusInternalError, "client did not wrap the key")
	case <-cc.done:
		s.endAssignment(a, wire.StatusCancelled, "the client left before the job ran")
	case <-sc.done:
	}
	return nil, false
}

// currentLocked reports whether the assignment still stands: the job is
// on that slave, for that attempt, not yet running. s.mu is held.
func (a assignment) currentLocked() bool {
	return a.j.slave == a.sc && a.j.attempt == a.attempt && a.j.state == wire.StateAssigned
}

// endAssignment ends a job whose assignment never reached its slave, and
// tells the client (if still there) with a Result.
func (s *Server) endAssignment(a assignment, status, detail string) {
	j := a.j
	s.mu.Lock()
	if !a.currentLocked() {
		s.mu.Unlock()
		return
	}
	client := j.client
	s.finishLocked(j, status)
	lang, e2e := j.submit.Language, j.finished.Sub(j.created)
	s.mu.Unlock()
	a.sc.log.Info("job ended before it was sent", "job", j.id, "status", status, "detail", detail)
	s.cfg.Metrics.finished(lang, status, e2e)
	if client != nil {
		client.send(wire.MsgResult, 0, wire.Result{JobID: j.id, Attempt: a.attempt, Status: status,
			Language: lang, Detail: detail})
		state := wire.StateDone
		if status == wire.StatusInternalError {
			state = wire.StateFailed
		}
		client.send(wire.MsgJobState, 0, wire.JobState{JobID: j.id, State: state, Attempt: a.attempt, Detail: detail})
	}
	s.wake()
}

// checkStranded ends queued jobs that no connected slave could run for
// longer than Config.StrandedAfter (their last slave for the language went
// away and did not come back), rather than letting them wait forever.
func (s *Server) checkStranded() {
	now := s.cfg.Now()
	type ended struct {
		j       *job
		client  *clientConn
		attempt int
		detail  string
	}
	var out []ended
	s.mu.Lock()
	cands := s.candidatesLocked()
	rest := s.queue[:0]
	for _, j := range s.queue {
		lang := j.submit.Language
		if supports(candidatesFor(cands, j.submit.Sealed), lang) {
			j.strandedSince = time.Time{}
			rest = append(rest, j)
			continue
		}
		if j.strandedSince.IsZero() {
			j.strandedSince = now
		}
		if now.Sub(j.strandedSince) < s.cfg.StrandedAfter {
			rest = append(rest, j)
			continue
		}
		detail := fmt.Sprintf("no connected slave has run %s for %s", lang, s.cfg.StrandedAfter)
		out = append(out, ended{j, j.client, j.attempt, detail})
		s.finishLocked(j, wire.StatusInternalError)
	}
	clear(s.queue[len(rest):])
	s.queue = rest
	s.mu.Unlock()
	for _, e := range out {
		s.log.Warn("queued job ended: no slave for its language", "job", e.j.id, "lang", e.j.submit.Language)
		s.cfg.Metrics.finished(e.j.submit.Language, wire.StatusInternalError, e.j.finished.Sub(e.j.created))
		if e.client != nil {
			e.client.send(wire.MsgResult, 0, wire.Result{JobID: e.j.id, Attempt: e.attempt,
				Status: wire.StatusInternalError, Language: e.j.submit.Language, Detail: e.detail})
			e.client.send(wire.MsgJobState, 0, wire.JobState{JobID: e.j.id, State: wire.StateFailed,
				Attempt: e.attempt, Detail: e.detail})
		}
	}
}

// notify sends a state change to the job's client, if it is still there.
func (s *Server) notify(j *job, st wire.JobState) {
	s.mu.Lock()
	c := j.client
	s.mu.Unlock()
	if c != nil {
		c.send(wire.MsgJobState, 0, st)
	}
}

// finishLocked records the end of a job and moves it to the history.
// s.mu is held.
func (s *Server) finishLocked(j *job, status string) {
	j.state, j.status, j.finished = wire.StateDone, status, s.cfg.Now()
	if status == wire.StatusInternalError {
		j.state = wire.StateFailed
	}
	if j.slave != nil {
		j.slaveWas = j.slave.id.Name
		delete(j.slave.running, j.id)
		j.slave = nil
	}
	delete(s.jobs, j.id)
	if j.client != nil {
		delete(j.client.jobs, j.id)
	}
	j.source, j.stdin = nil, nil
	s.releaseLocked(&j.held)
	s.history = append(s.history, j)
	if len(s.history) > s.cfg.History {
		clear(s.history[:len(s.history)-s.cfg.History])
		s.history = s.history[len(s.history)-s.cfg.History:]
	}
}

// requeueLocked puts the jobs of a lost slave back at the head of the queue
// with a new attempt number. s.mu is held. It returns the notifications to
// send once the lock is released.
func (s *Server) requeueLocked(sc *slaveConn) []func() {
	var lost []*job
	for _, j := range sc.running {
		lost = append(lost, j)
	}
	sortJobs(lost)
	var notes []func()
	requeued := lost[:0]
	for _, j := range lost {
		if j.client == nil {
			// Its client left and dropClient asked the slave to cancel it:
			// nobody waits for it to run again.
			s.finishLocked(j, wire.StatusCancelled)
			s.cfg.Metrics.finished(j.submit.Language, wire.StatusCancelled, j.finished.Sub(j.created))
			continue
		}
		requeued = append(requeued, j)
		j.attempt++
		j.slaveWas = sc.id.Name
		j.slave, j.state = nil, wire.StateQueued
		st := wire.JobState{JobID: j.id, State: wire.StateRequeued, Attempt: j.attempt,
			Detail: fmt.Sprintf("slave %s was lost; running the job again", sc.id.Name)}
		if c := j.client; c != nil {
			notes = append(notes, func() { c.send(wire.MsgJobState, 0, st) })
		}
	}
	clear(sc.running)
	s.queue = append(requeued, s.queue...)
	return notes
}

// dispatchLoop places jobs whenever something changed, and checks slave
// heartbeats and stalled uploads on a tick.
func (s *Server) dispatchLoop(ctx interface{ Done() <-chan struct{} }) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.dispatch()
		case <-tick.C:
			s.checkHeartbeats()
			s.checkUploads()
			s.checkStranded()
			s.dispatch()
		}
	}
}
