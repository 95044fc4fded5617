package master

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"kiln/master/state"
	"kiln/transport/wire"
)

// job is one submitted program, from Submit to Result.
type job struct {
	id       string
	client   *clientConn // nil once the client has gone
	clientID string      // the client's name, kept for listings
	owner    string      // the client key's fingerprint: sent in Assign; its fair-queue and budget account
	submit   wire.Submit
	source   payload
	stdin    payload
	srcSum   []byte
	stdinSum []byte

	state    string // wire.StateQueued, StateAssigned, StateRunning, StateDone, StateFailed
	slave    *slaveConn
	attempt  int
	created  time.Time
	assigned time.Time
	finished time.Time
	status   string    // the result status once done
	outcome  outcome   // figures and detail of the Result that ended it, for job show
	held     int64     // bytes of source and stdin counted in Server.held
	deadline time.Time // when the current attempt's Result is due (see JobBudget.jobDeadline)

	strandedSince time.Time // when it was first seen queued with no slave for its language
	slaveWas      string    // name of the slave that ran it
	// retried is set once the job was queued again after a slave-side
	// failure; avoid is the slave that failed it, which it does not go
	// back to. A second slave-side failure ends the job.
	retried bool
	avoid   string

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

	// Durable jobs (see durable.go): a restored job that was on slave
	// awaitSlave waits until awaitUntil for it to report the job; wraps
	// are the content key wrapped ahead by the client, by slave name.
	awaitSlave string
	awaitUntil time.Time
	wraps      map[string][]byte
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
	owner := cc.id.Fingerprint
	refuse := func(code, msg string, retry bool) {
		s.releaseLocked(owner, &u.held)
		s.mu.Unlock()
		e := wire.Error{Code: code, Message: msg}
		if retry {
			e.RetryAfterMs = s.retryAfterMs()
		}
		cc.send(wire.MsgError, reqID, e)
	}
	if msg := s.noSlaveLocked(u.submit); msg != "" {
		refuse(wire.CodeNoSlave, msg, false)
		return
	}
	if s.queue.len()+s.writing >= s.cfg.Limits.MaxQueue {
		refuse(wire.CodeBusy, fmt.Sprintf("queue full (%d jobs waiting)", s.cfg.Limits.MaxQueue), true)
		return
	}
	if n := s.active[owner]; n >= s.cfg.Budget.Jobs.JobsPerClient {
		refuse(wire.CodeBusy, fmt.Sprintf("this key has %d jobs queued or running, its limit", n), true)
		return
	}
	// The job counts from here: a durable master lets go of s.mu while it
	// writes the Submit, and the key's Submits on its other sessions (and
	// the next ones of this session), checked meanwhile, must see it, or
	// they all passed the limits at once.
	s.active[owner]++
	s.writing++
	// written queues the job under id, or refuses it; s.mu is held, and
	// released on return.
	written := func(id string, e *wire.Error) {
		s.writing--
		if e != nil {
			if s.active[owner]--; s.active[owner] <= 0 {
				delete(s.active, owner)
			}
			refuse(e.Code, e.Message, e.RetryAfterMs > 0)
			return
		}
		s.queueLocked(cc, reqID, u, id)
	}
	if s.cfg.Store == nil {
		s.nextJob++
		written(fmt.Sprintf("J%d", s.nextJob), nil)
		return
	}
	s.mu.Unlock()
	f, e := s.proposeSubmit(cc, u)
	if e != nil {
		s.mu.Lock()
		written("", e)
		return
	}
	// The session does not wait for the write: its next Submits (proposed
	// in order, so their ids are too) go into the same log entry, one
	// fsync for all. Accepted follows the write; the jobs queue in the
	// order they were written (OnDone runs in that order).
	f.OnDone(func(j *state.Job, err error) {
		id, e := s.submitWritten(cc, j, err)
		s.mu.Lock()
		written(id, e)
	})
}

// queueLocked queues a job whose Submit is written (durable) under id and
// tells its client. s.mu is held, and released on return.
func (s *Server) queueLocked(cc *clientConn, reqID uint64, u *upload, id string) {
	lang, owner := u.submit.Language, cc.id.Fingerprint
	client := cc
	if _, ok := s.clients[cc]; !ok && s.durable() {
		// The session ended while the Submit was written: the job is
		// kept and goes on, as dropClient leaves a durable job, and its
		// client may find it again (ListJobs, Attach).
		client = nil
	}
	j := &job{
		id: id, client: client, clientID: cc.id.Name, owner: owner, submit: u.submit,
		source: u.source, stdin: u.stdin, srcSum: u.srcSum, stdinSum: u.stdinSum,
		state: wire.StateQueued, attempt: 1, created: s.cfg.Now(), held: u.held,
	}
	u.held = 0
	s.jobs[j.id] = j
	if client != nil {
		cc.jobs[j.id] = j
	}
	cc.submitted++
	s.queue.push(j)
	pos := s.queue.position(j)
	// Accepted is queued under the lock (send never blocks), so the job is
	// dispatchable from the moment the client can know its id: a slot freed
	// between the two once went to another client's later job.
	cc.send(wire.MsgAccepted, reqID, wire.Accepted{JobID: j.id, Position: pos})
	cc.progress(wire.JobState{JobID: j.id, State: wire.StateQueued, Attempt: 1})
	j.accepted = true
	size := j.source.size()
	s.mu.Unlock()
	if cc.log.Enabled(context.Background(), slog.LevelDebug) {
		cc.log.Debug("job queued", "job", j.id, "lang", lang, "file", truncate(u.submit.FileName, 100), "bytes", size)
	}
	s.wake()
}

// noSlaveLocked says why no connected slave could ever run sub, or "".
// s.mu is held.
func (s *Server) noSlaveLocked(sub wire.Submit) string {
	s.refreshIndexLocked(s.cfg.Now())
	if s.index.runs(&sub) {
		return ""
	}
	lang := sub.Language
	cands := s.candidatesLocked(s.cfg.Now())
	mine := candidatesFor(cands, sub.Sealed)
	if msg := unfitting(mine, sub); msg != "" {
		return msg
	}
	if supports(mine, lang, "") {
		return ""
	}
	var drained, out bool
	for _, c := range mine {
		if c.languages[lang] {
			drained = drained || c.drained
			out = out || c.out != ""
		}
	}
	switch {
	case drained:
		return fmt.Sprintf("every connected slave that runs %s is drained by an admin; retry later", lang)
	case out:
		return fmt.Sprintf("every connected slave that runs %s is quarantined or unhealthy; retry later", lang)
	case sub.Sealed && supports(cands, lang, ""):
		return fmt.Sprintf("no connected slave with a sealing key runs %s (submit unsealed, or re-issue the slaves' bundles)", lang)
	}
	return fmt.Sprintf("no connected slave runs %s", lang)
}

// retryAfterMs is the retry hint sent with every busy answer.
func (s *Server) retryAfterMs() int64 { return s.cfg.Budget.BusyRetryAfter.Milliseconds() }

// wake asks the dispatcher to look at the queue.
func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// candidatesLocked builds the scheduler's view of the slaves at now.
// s.mu is held.
func (s *Server) candidatesLocked(now time.Time) []*candidate {
	cands := make([]*candidate, 0, len(s.slaves))
	for sc := range s.slaves {
		if sc.registered {
			cands = append(cands, sc.candidate(s.slaveRecs[sc.id.Name], now))
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
	source, stdin payload
	// inline: the files travel inside the Assign (see inlineRoom).
	inline bool
}

// dispatch places every queued job that some slave has room for, serving
// the clients' queues round robin (see fairQueue). Jobs whose language has
// no free slot stay queued without blocking others behind them.
func (s *Server) dispatch() {
	s.dispatches.Add(1)
	s.mu.Lock()
	now := s.cfg.Now()
	s.refreshIndexLocked(now)
	if s.checkIndex {
		s.verifyIndexLocked(now)
	}
	var placed []assignment
	// Slots only go while a dispatch runs: a kind of job that found none
	// finds none later in it, and the jobs of that kind behind it are
	// passed over at the cost of a map lookup.
	var blocked map[jobKind]bool
	take := func(js []*job) int {
		for i, j := range js {
			if !s.index.anyFree() {
				return -1 // no job of anyone's fits now: stop walking the queue
			}
			if !j.accepted {
				continue
			}
			k, simple := kindOf(j)
			if simple && blocked[k] {
				continue
			}
			c := s.index.pickJob(j)
			if c == nil {
				if simple {
					if blocked == nil {
						blocked = map[jobKind]bool{}
					}
					blocked[k] = true
				}
				continue
			}
			s.assignLocked(j, c.slave, now)
			placed = append(placed, assignment{j: j, sc: j.slave, attempt: j.attempt, source: j.source, stdin: j.stdin})
			return i
		}
		return -1
	}
	for s.index.anyFree() && s.queue.round(take) {
	}
	if s.checkIndex {
		s.verifyDispatchedLocked()
	}
	s.mu.Unlock()
	var pending map[*slaveConn]int64
	for _, a := range placed {
		if a.inline = a.canInline() && inlineRoom(a, pending); a.inline && a.j.submit.Sealed {
			if pending == nil {
				pending = map[*slaveConn]int64{}
			}
			pending[a.sc] += int64(a.source.size() + a.stdin.size()) // queued after its wrap
		}
		if a.sc.log.Enabled(context.Background(), slog.LevelDebug) {
			a.sc.log.Debug("job assigned", "job", a.j.id, "client", a.j.clientID, "lang", a.j.submit.Language, "attempt", a.attempt)
		}
		s.cfg.Metrics.dispatched(a.j.assigned.Sub(a.j.created))
		if a.waits() {
			s.goRun(func() { s.sendJob(a) })
		} else {
			s.sendJob(a) // queues its messages and returns: no goroutine per job
		}
	}
}

// jobKind is what the scheduler asks of a slave for a job without
// compiler options or a slave to avoid: two such jobs of one kind fit the
// same slaves.
type jobKind struct {
	lang          string
	sealed, tests bool
}

// kindOf returns j's kind, and whether j is that simple.
func kindOf(j *job) (jobKind, bool) {
	return jobKind{j.submit.Language, j.submit.Sealed, j.submit.Tests > 0}, len(j.submit.Options) == 0 && j.avoid == ""
}

// waits reports whether sending a may block: a sealed job waits for its
// key to be wrapped, files not inline stream.
func (a assignment) waits() bool { return a.j.submit.Sealed || !a.inline }

// canInline reports whether a's files may travel inside its Assign: the
// slave speaks wire.FeatureInline and they fit in wire.MaxInline.
func (a assignment) canInline() bool {
	return wire.HasFeature(a.sc.hello.Features, wire.FeatureInline) && a.source.size()+a.stdin.size() <= wire.MaxInline
}

// inlineRoom reports whether a's files fit inline in its slave's send
// queue: with what is queued and what sealed assignments placed before it
// will queue after their wraps (pending), at most half the queue's bound
// (Budget.SendQueueBytes). Past it they go on file streams, which the
// transport's flow control paces: one dispatch placed a burst of inline
// Assigns on a slave of many slots (400 of 64 KiB: 27 MiB) and its queue
// went past the bound, so the master dropped an honest slave as too slow
// and struck it (TestInlineBurstKeepsSlave).
func inlineRoom(a assignment, pending map[*slaveConn]int64) bool {
	n := int64(a.source.size() + a.stdin.size())
	return a.sc.q.queued()+pending[a.sc]+n <= a.sc.q.limit/2
}

// assignLocked places j on sc at now and sets the attempt's deadline and
// output route. s.mu is held.
func (s *Server) assignLocked(j *job, sc *slaveConn, now time.Time) {
	s.placeLocked(j, sc, now)
	s.waitLogged(s.proposeLazyLocked(&state.Command{Kind: state.KindAssign, Job: j.id, Attempt: j.attempt, Slave: sc.id.Name}), "assign", j.id)
}

// placeLocked puts j on sc in memory: the running table, the attempt's
// deadline and its output route. s.mu is held.
func (s *Server) placeLocked(j *job, sc *slaveConn, now time.Time) {
	sc.lastAssigned = now
	sc.running[j.id] = j
	s.reindexLocked(sc)
	j.slave, j.state, j.assigned = sc, wire.StateAssigned, now
	j.assignSent = false
	j.deadline = now.Add(s.cfg.Budget.Jobs.attemptDeadline(j.submit))
	limit := j.submit.Limits.OutputBytes
	if limit <= 0 {
		limit = s.cfg.Limits.MaxOutput
	}
	sc.addRoute(j.id, &route{attempt: j.attempt, client: j.client, limit: limit,
		tests:   min(j.submit.Tests, wire.MaxTests),
		maxMsgs: s.cfg.Budget.Jobs.OutputMessages, sealed: j.submit.Sealed, durable: s.durable(),
		owner: j.owner, held: &s.outHeld, maxHeld: s.cfg.Budget.Jobs.DurableOutputPerClient})
}

// sendJob delivers an assignment: the Assign message and the job's files,
// inline in it when the slave speaks wire.FeatureInline and they fit in
// wire.MaxInline, else on file streams. A sealed job first needs its
// content key wrapped for the slave by the client (see wrapFor). A file
// that cannot be delivered fails this attempt only (see failAttempt),
// never the slave's session.
func (s *Server) sendJob(a assignment) {
	j, sc := a.j, a.sc
	s.notify(j, wire.JobState{JobID: j.id, State: wire.StateAssigned, Slave: sc.id.Name, Attempt: a.attempt})
	var wrapped, nonce []byte
	if j.submit.Sealed {
		var ok bool
		if wrapped, nonce, ok = s.wrapFor(a); !ok {
			return
		}
	}
	as := wire.Assign{
		JobID: j.id, Attempt: a.attempt, Language: j.submit.Language, FileName: j.submit.FileName,
		SourceSize: a.source.size(), StdinSize: a.stdin.size(), Limits: j.submit.Limits,
		Sealed: j.submit.Sealed, WrappedKey: wrapped, WrapNonce: nonce, ClientKey: j.submit.ClientKey, Owner: j.owner,
		Options: j.submit.Options, Tests: j.submit.Tests,
	}
	inline := a.inline
	if inline {
		as.Inline = inlineFiles(j, a)
	}
	sc.send(wire.MsgAssign, 0, as)
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
	if !inline && !s.sendFiles(a) {
		return
	}
	s.mu.Lock()
	current := a.currentLocked()
	if current {
		j.state = wire.StateRunning
	}
	s.mu.Unlock()
	if current {
		s.notify(j, wire.JobState{JobID: j.id, State: wire.StateRunning, Slave: sc.id.Name, Attempt: a.attempt})
	}
}

// inlineFiles returns an assignment's files for its Assign, with the
// SHA-256 sums the client sent (the master checked them) or, for a job
// without them, computed here; a sealed job's files need none.
func inlineFiles(j *job, a assignment) wire.Inline {
	var in wire.Inline
	if a.source.size() > 0 {
		in.Source, in.SourceSHA256 = a.source.flat(), j.srcSum
	}
	if a.stdin.size() > 0 {
		in.Stdin, in.StdinSHA256 = a.stdin.flat(), j.stdinSum
	}
	if j.submit.Sealed {
		return in
	}
	if len(in.Source) > 0 && len(in.SourceSHA256) == 0 {
		in.Set(wire.FileSource, in.Source, false)
	}
	if len(in.Stdin) > 0 && len(in.StdinSHA256) == 0 {
		in.Set(wire.FileStdin, in.Stdin, false)
	}
	return in
}

// sendFiles streams an assignment's files to its slave; false when one
// could not be delivered and the attempt failed.
func (s *Server) sendFiles(a assignment) bool {
	j, sc := a.j, a.sc
	idle := s.cfg.Budget.Jobs.SendFileIdle
	if err := sc.sendFile(idle, j.id, wire.FileSource, j.submit.FileName, a.source, j.srcSum, j.submit.Sealed); err != nil {
		sc.log.Warn("source not delivered", "job", j.id, "err", err)
		s.failAttempt(sc, j, a.attempt, wire.StatusInternalError, fmt.Sprintf("source not delivered to slave %s: %v", sc.id.Name, err), true)
		return false
	}
	if a.stdin.size() > 0 {
		if err := sc.sendFile(idle, j.id, wire.FileStdin, "stdin", a.stdin, j.stdinSum, j.submit.Sealed); err != nil {
			sc.log.Warn("stdin not delivered", "job", j.id, "err", err)
			s.failAttempt(sc, j, a.attempt, wire.StatusInternalError, fmt.Sprintf("stdin not delivered to slave %s: %v", sc.id.Name, err), true)
			return false
		}
	}
	return true
}

// wrapFor returns the content key of a sealed job wrapped for the
// assigned slave, and the nonce it is bound to when the client wrapped it
// in the Submit (nil: bound to the job id). Unless the client wrapped it
// ahead for that slave, it asks the client, sending the slave's
// certificate so the client can check the key, and waits for the answer.
// It returns false when the assignment is over: the slave went away (the
// job is re-queued, and the next assignment asks again), or the job ended
// here because the client refused, cancelled, left or did not answer
// within WrapTimeout.
func (s *Server) wrapFor(a assignment) (wrapped, nonce []byte, ok bool) {
	j, sc := a.j, a.sc
	ch := make(chan wire.Wrapped, 1)
	s.mu.Lock()
	cc := j.client
	if w, n := j.storedWrap(sc); w != nil && a.currentLocked() {
		s.mu.Unlock()
		return w, n, true // wrapped ahead by the client for this slave
	}
	if cc == nil && s.durable() && a.currentLocked() {
		s.mu.Unlock()
		s.endAssignment(a, wire.StatusInternalError, fmt.Sprintf("the client is away and did not wrap the job's key for slave %s ahead", sc.id.Name))
		return nil, nil, false
	}
	if cc == nil || !a.currentLocked() {
		s.mu.Unlock()
		s.endAssignment(a, wire.StatusCancelled, "the client left before the job ran")
		return nil, nil, false
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
			sc.log.Warn("client refused to wrap a job key for this slave", "job", j.id, "client", cc.id.Name, "reason", truncate(w.Refused, 200))
			s.endAssignment(a, wire.StatusInternalError, "client refused to wrap the key: "+w.Refused)
		case len(w.WrappedKey) == 0:
			s.endAssignment(a, wire.StatusCancelled, "cancelled before it ran")
		default:
			return w.WrappedKey, nil, true
		}
	case <-t.C:
		s.endAssignment(a, wire.StatusInternalError, "client did not wrap the key")
	case <-cc.done:
		// A client that submits and leaves (kiln submit) sends its key
		// wraps after Accepted and may be gone before it reads this
		// request: the wraps it sent first are read before its session
		// ends, so look for them again.
		s.mu.Lock()
		w, n := j.storedWrap(sc)
		current := a.currentLocked()
		s.mu.Unlock()
		if w != nil && current {
			return w, n, true
		}
		s.endAssignment(a, wire.StatusCancelled, "the client left before the job ran")
	case <-sc.done:
	}
	return nil, nil, false
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
	s.mu.Unlock()
	a.sc.log.Info("job ended before it was sent", "job", j.id, "status", status, "detail", truncate(detail, 200))
	s.ended(client, j, a.attempt, status, detail)
}

// ended reports a job the master ended itself: metrics, then a Result and
// its final JobState to the client, if still there.
func (s *Server) ended(client *clientConn, j *job, attempt int, status, detail string) {
	s.mu.Lock()
	j.outcome.Detail = truncate(detail, 500)
	s.mu.Unlock()
	lang := j.submit.Language
	s.cfg.Metrics.finished(lang, status, j.finished.Sub(j.created))
	res := wire.Result{JobID: j.id, Attempt: attempt, Status: status, Language: lang, Detail: detail}
	if s.durable() {
		s.mu.Lock()
		f := s.proposeResultLocked(j, res, nil)
		s.mu.Unlock()
		if _, err := f.Wait(); err != nil {
			s.log.Warn("job end not written to the durable state", "job", j.id, "err", err)
		}
	}
	if client != nil {
		client.send(wire.MsgResult, 0, res)
		client.progress(wire.JobState{JobID: j.id, State: endState(status), Attempt: attempt, Detail: detail})
		s.delivered(j)
	}
	s.wake()
}

// endState is the final JobState of a job that ended with status.
func endState(status string) string {
	if status == wire.StatusInternalError || status == wire.StatusNoSlave {
		return wire.StateFailed
	}
	return wire.StateDone
}

// failAttempt ends attempt of j on sc for a reason on the slave's side (a
// file it could not take, a missed deadline, output over the cap, an
// internal error of its own): the slave is struck (see slaveRecord) and
// told to cancel the job; the job runs again on another slave once when
// retry is set, else it ends with status and detail. It does nothing if
// that attempt is no longer on sc.
func (s *Server) failAttempt(sc *slaveConn, j *job, attempt int, status, detail string, retry bool) {
	s.mu.Lock()
	if j.slave != sc || j.attempt != attempt || (j.state != wire.StateAssigned && j.state != wire.StateRunning) {
		s.mu.Unlock()
		return
	}
	s.strikeLocked(sc, detail)
	cancel := j.assignSent
	client := j.client
	requeue := retry && !j.retried && (client != nil || s.durable())
	if requeue {
		s.waitLogged(s.proposeLocked(&state.Command{Kind: state.KindRequeue, Job: j.id, Attempt: j.attempt}), "requeue", j.id)
		delete(sc.running, j.id)
		s.reindexLocked(sc)
		sc.dropRoute(j.id)
		j.slaveWas, j.slave, j.state = sc.id.Name, nil, wire.StateQueued
		j.attempt++
		j.retried, j.avoid, j.deadline = true, sc.id.Name, time.Time{}
		s.queue.pushFront(j)
	} else {
		s.finishLocked(j, status)
	}
	s.mu.Unlock()
	if cancel {
		sc.send(wire.MsgCancel, 0, wire.Cancel{JobID: j.id})
	}
	if !requeue {
		sc.log.Warn("job ended by the master", "job", j.id, "status", status, "detail", truncate(detail, 200))
		s.ended(client, j, attempt, status, detail)
		return
	}
	sc.log.Warn("job failed on this slave; running it again elsewhere", "job", j.id, "detail", truncate(detail, 200))
	if client != nil {
		client.send(wire.MsgJobState, 0, wire.JobState{JobID: j.id, State: wire.StateRequeued, Attempt: attempt + 1,
			Detail: fmt.Sprintf("%s; running the job again on another slave", detail)})
	}
	s.wake()
}

// checkDeadlines fails every attempt whose slave has not answered by its
// deadline (see JobBudget.attemptDeadline).
func (s *Server) checkDeadlines() {
	now := s.cfg.Now()
	type late struct {
		sc      *slaveConn
		j       *job
		attempt int
		after   time.Duration
	}
	var out []late
	s.mu.Lock()
	// Only placed jobs have a deadline: walk the slaves' running jobs,
	// not the queue.
	for sc := range s.slaves {
		for _, j := range sc.running {
			if j.slave != nil && !j.deadline.IsZero() && now.After(j.deadline) {
				out = append(out, late{j.slave, j, j.attempt, j.deadline.Sub(j.assigned)})
			}
		}
	}
	s.mu.Unlock()
	for _, l := range out {
		s.failAttempt(l.sc, l.j, l.attempt, wire.StatusInternalError,
			fmt.Sprintf("slave %s did not finish the job within %s", l.sc.id.Name, l.after.Round(time.Millisecond)), true)
	}
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
		status  string
	}
	var out []ended
	s.mu.Lock()
	s.refreshIndexLocked(now)
	var cands []*candidate // built only when some job is stranded
	for _, j := range s.queue.all() {
		lang := j.submit.Language
		if s.index.supports(lang, j.submit.Sealed, j.avoid) {
			j.strandedSince = time.Time{}
			continue
		}
		if j.strandedSince.IsZero() {
			j.strandedSince = now
		}
		if cands == nil {
			cands = s.candidatesLocked(now)
		}
		// Drained slaves stay drained until an admin says otherwise:
		// waiting for them helps nobody.
		if drainedRun(candidatesFor(cands, j.submit.Sealed), lang) {
			detail := fmt.Sprintf("every connected slave that runs %s was drained by an admin", lang)
			out = append(out, ended{j, j.client, j.attempt, detail, wire.StatusNoSlave})
			s.queue.remove(j)
			s.finishLocked(j, wire.StatusNoSlave)
			continue
		}
		if now.Sub(j.strandedSince) < s.cfg.StrandedAfter {
			continue
		}
		detail := fmt.Sprintf("no connected slave has run %s for %s", lang, s.cfg.StrandedAfter)
		out = append(out, ended{j, j.client, j.attempt, detail, wire.StatusInternalError})
		s.queue.remove(j)
		s.finishLocked(j, wire.StatusInternalError)
	}
	s.mu.Unlock()
	for _, e := range out {
		s.log.Warn("queued job ended: no slave for its language", "job", e.j.id, "lang", e.j.submit.Language, "status", e.status)
		s.ended(e.client, e.j, e.attempt, e.status, e.detail)
	}
}

// notify sends a progress state to the job's client, if it is still
// there and wants it (see clientConn.progress).
func (s *Server) notify(j *job, st wire.JobState) {
	s.mu.Lock()
	c := j.client
	s.mu.Unlock()
	if c != nil {
		c.progress(st)
	}
}

// finishLocked records the end of a job and moves it to the history.
// s.mu is held; the job is not queued.
func (s *Server) finishLocked(j *job, status string) {
	j.state, j.status, j.finished = endState(status), status, s.cfg.Now()
	if j.slave != nil {
		j.slaveWas = j.slave.id.Name
		delete(j.slave.running, j.id)
		s.reindexLocked(j.slave)
		j.slave.dropRoute(j.id)
		j.slave = nil
	}
	delete(s.jobs, j.id)
	if j.client != nil {
		delete(j.client.jobs, j.id)
	}
	if s.active[j.owner]--; s.active[j.owner] <= 0 {
		delete(s.active, j.owner)
	}
	// What the history keeps of an ended job is what listings show: no
	// files, no key wraps (64 of up to 1,152 B a Submit, and as many
	// more from Wraps). Nothing reads them without s.mu.
	j.source, j.stdin, j.submit.Wraps, j.wraps = nil, nil, nil, nil
	s.releaseLocked(j.owner, &j.held)
	s.history = append(s.history, j)
	if len(s.history) > s.cfg.History {
		clear(s.history[:len(s.history)-s.cfg.History])
		s.history = s.history[len(s.history)-s.cfg.History:]
	}
}

// requeueLocked puts the jobs of a lost slave back at the head of their
// clients' queues with a new attempt number, and strikes the slave once
// when it took any along: a slave key that dropped its session with jobs
// running and came back at once was the idlest slave again (a new
// session was never assigned anything) and got the same jobs back
// without end; now it is quarantined after Budget.Jobs.QuarantineStrikes
// losses in a row (TestHostileSlaveFlapsWithJobs). s.mu is held. It
// returns the notifications to send once the lock is released.
func (s *Server) requeueLocked(sc *slaveConn) []func() {
	if s.closing && s.durable() {
		// The master is stopping, not the slave: its jobs stay on it in
		// the durable state, and the next start takes them back.
		clear(sc.running)
		s.reindexLocked(sc)
		sc.clearRoutes()
		return nil
	}
	var lost []*job
	for _, j := range sc.running {
		lost = append(lost, j)
	}
	sortJobs(lost)
	var notes []func()
	requeued := 0
	for i := len(lost) - 1; i >= 0; i-- { // pushFront in reverse keeps the order
		j := lost[i]
		if j.client == nil && !s.durable() {
			// Its client left and dropClient asked the slave to cancel it:
			// nobody waits for it to run again.
			s.finishLocked(j, wire.StatusCancelled)
			s.cfg.Metrics.finished(j.submit.Language, wire.StatusCancelled, j.finished.Sub(j.created))
			continue
		}
		s.waitLogged(s.proposeLocked(&state.Command{Kind: state.KindRequeue, Job: j.id, Attempt: j.attempt}), "requeue", j.id)
		requeued++
		j.attempt++
		j.slaveWas = sc.id.Name
		j.slave, j.state, j.deadline = nil, wire.StateQueued, time.Time{}
		s.queue.pushFront(j)
		if j.client == nil {
			continue
		}
		st := wire.JobState{JobID: j.id, State: wire.StateRequeued, Attempt: j.attempt,
			Detail: fmt.Sprintf("slave %s was lost; running the job again", sc.id.Name)}
		c := j.client
		notes = append(notes, func() { c.send(wire.MsgJobState, 0, st) })
	}
	if requeued > 0 {
		s.strikeLocked(sc, fmt.Sprintf("session lost with %d job(s) running", requeued))
	}
	clear(sc.running)
	s.reindexLocked(sc)
	sc.clearRoutes()
	return notes
}

// dispatchLoop places jobs whenever something changed, and checks slave
// heartbeats, job deadlines and stalled uploads on a tick.
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
			s.checkDeadlines()
			s.checkUploads()
			s.checkStranded()
			s.checkReclaims()
			s.dispatch()
		}
	}
}

// outcome is what job show reports of a finished job's Result.
type outcome struct {
	ExitCode  int    `json:"exit_code"`
	Signal    int    `json:"signal,omitempty"`
	Detail    string `json:"detail,omitempty"`
	WallMs    int64  `json:"wall_ms"`
	CPUMs     int64  `json:"cpu_ms"`
	MemoryKiB int64  `json:"memory_kib"`
	Compiler  string `json:"compiler,omitempty"`
	Cached    bool   `json:"cached"`
}

func outcomeOf(r wire.Result) outcome {
	return outcome{ExitCode: r.ExitCode, Signal: r.Signal, Detail: truncate(r.Detail, 500), WallMs: r.WallMs,
		CPUMs: r.CPUMs, MemoryKiB: r.MemoryKiB, Compiler: r.Compiler, Cached: r.Cached}
}

// liveJobs counts the jobs queued, assigned or running.
func (s *Server) liveJobs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}
