package master

import (
	"cmp"
	"errors"
	"slices"
	"strconv"

	"kiln/master/state"
	"kiln/transport/wire"
)

// maySee reports whether cc may see a job owned by owner (a key
// fingerprint): its own jobs, or any job for an admin key.
func maySee(cc *clientConn, owner string) bool {
	return owner == cc.id.Fingerprint || cc.id.Role == wire.RoleAdmin
}

// attach answers an Attach: the job, if cc may see it, becomes one of
// cc's, and its state, its current attempt's output so far and its
// result (when it has one) follow. A job of another key is answered as
// unknown.
func (s *Server) attach(cc *clientConn, reqID uint64, id string) {
	notFound := wire.Error{Code: wire.CodeNotFound, Message: "no job " + truncate(id, 64) + " of this key"}
	s.mu.Lock()
	if j := s.jobs[id]; j != nil {
		if maySee(cc, j.owner) {
			s.attachLiveLocked(cc, reqID, j)
		} else {
			cc.send(wire.MsgError, reqID, notFound)
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	var rec *state.Job
	if s.cfg.Store != nil {
		rec, _ = s.cfg.Store.Machine().Job(id)
	}
	if rec == nil || !maySee(cc, rec.Owner) {
		cc.send(wire.MsgError, reqID, notFound)
		return
	}
	cc.send(wire.MsgAttached, reqID, attachedOf(rec.ID, rec.State, rec.Attempt, rec.Submit))
	for _, c := range rec.Output {
		cc.send(wire.MsgOutput, 0, wire.Output{JobID: rec.ID, Attempt: rec.Attempt, Stream: c.Stream, Seq: c.Seq, Data: c.Data, Key: c.Key})
	}
	if rec.Result != nil {
		r := *rec.Result
		cc.send(wire.MsgResult, 0, r)
		cc.send(wire.MsgJobState, 0, wire.JobState{JobID: rec.ID, State: endState(r.Status), Slave: r.Slave, Attempt: r.Attempt})
		if !rec.Delivered {
			s.delivered(&job{id: rec.ID})
		}
	}
}

// attachLiveLocked makes a job that has not ended one of cc's: the
// Attached answer, its state, then the output its current attempt sent
// so far, before anything new (the route is switched under its lock).
// s.mu is held.
func (s *Server) attachLiveLocked(cc *clientConn, reqID uint64, j *job) {
	if old := j.client; old != nil && old != cc {
		delete(old.jobs, j.id)
	}
	j.client = cc
	cc.jobs[j.id] = j
	cc.send(wire.MsgAttached, reqID, attachedOf(j.id, j.state, j.attempt, j.submit))
	slave := ""
	if j.slave != nil {
		slave = j.slave.id.Name
	}
	cc.send(wire.MsgJobState, 0, wire.JobState{JobID: j.id, State: j.state, Slave: slave, Attempt: j.attempt})
	if sc := j.slave; sc != nil {
		sc.rmu.Lock()
		if r := sc.routes[j.id]; r != nil {
			r.client = cc
			for _, c := range r.chunks {
				cc.send(wire.MsgOutput, 0, wire.Output{JobID: j.id, Attempt: r.attempt, Stream: c.Stream, Seq: c.Seq, Data: c.Data, Key: c.Key})
			}
		}
		sc.rmu.Unlock()
	}
	cc.log.Info("job attached", "job", j.id, "state", j.state)
}

func attachedOf(id, st string, attempt int, sub wire.Submit) wire.Attached {
	return wire.Attached{JobID: id, State: st, Attempt: attempt, Language: sub.Language, FileName: sub.FileName,
		Sealed: sub.Sealed, KeyNonce: sub.KeyNonce, ClientKey: sub.ClientKey}
}

// listJobs answers a ListJobs: the jobs cc may see, newest first.
func (s *Server) listJobs(cc *clientConn, reqID uint64) {
	var out []wire.JobSummary
	if s.cfg.Store != nil {
		owner := cc.id.Fingerprint
		if cc.id.Role == wire.RoleAdmin {
			owner = ""
		}
		for _, r := range s.cfg.Store.Machine().Jobs(owner) {
			out = append(out, summaryOf(r))
		}
	} else {
		s.mu.Lock()
		for _, j := range s.history {
			if maySee(cc, j.owner) {
				out = append(out, summaryOfJob(j))
			}
		}
		for _, j := range s.jobs {
			if maySee(cc, j.owner) {
				out = append(out, summaryOfJob(j))
			}
		}
		s.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b wire.JobSummary) int {
		return cmp.Or(-cmp.Compare(a.CreatedMs, b.CreatedMs), -cmp.Compare(len(a.JobID), len(b.JobID)), -cmp.Compare(a.JobID, b.JobID))
	})
	l := wire.JobList{Jobs: out}
	if len(out) > wire.MaxJobList {
		l.Jobs, l.Truncated = out[:wire.MaxJobList], true
	}
	for i := range l.Jobs {
		l.Jobs[i].FileName = truncate(l.Jobs[i].FileName, 256)
	}
	cc.send(wire.MsgJobList, reqID, l)
}

func summaryOf(r *state.Job) wire.JobSummary {
	s := wire.JobSummary{JobID: r.ID, Client: r.Name, State: r.State, Attempt: r.Attempt, Language: r.Submit.Language,
		FileName: r.Submit.FileName, CreatedMs: r.Created.UnixMilli()}
	if r.Result != nil {
		s.Status = r.Result.Status
	}
	if !r.Finished.IsZero() {
		s.FinishedMs = r.Finished.UnixMilli()
	}
	return s
}

func summaryOfJob(j *job) wire.JobSummary {
	s := wire.JobSummary{JobID: j.id, Client: j.clientID, State: j.state, Status: j.status, Attempt: j.attempt,
		Language: j.submit.Language, FileName: j.submit.FileName, CreatedMs: j.created.UnixMilli()}
	if !j.finished.IsZero() {
		s.FinishedMs = j.finished.UnixMilli()
	}
	return s
}

// wraps stores a sealed job's keys wrapped ahead by its client, and
// answers Accepted once they are written. A job takes one non-empty
// Wraps: each is a durable log entry (up to 64 × 512 B), so a key
// repeating it could otherwise keep the disk busy at its message rate.
func (s *Server) wraps(cc *clientConn, reqID uint64, w wire.Wraps) {
	s.mu.Lock()
	j := s.jobs[w.JobID]
	if j == nil || j.owner != cc.id.Fingerprint || !j.submit.Sealed {
		s.mu.Unlock()
		cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeNotFound, Message: "no sealed job " + truncate(w.JobID, 64) + " of this key waiting"})
		return
	}
	if len(w.Wraps) == 0 || len(j.wraps) > 0 {
		s.mu.Unlock()
		cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeBadRequest, Message: "job " + j.id + " takes one non-empty Wraps; it has " + strconv.Itoa(len(j.wraps))})
		return
	}
	// The wraps stay with the job until it ends: charged like its files.
	var n int64
	for _, k := range w.Wraps {
		n += int64(len(k.Slave) + len(k.Key))
	}
	if err := s.chargeKeyLocked(j.owner, &j.held, n); err != nil {
		s.mu.Unlock()
		e := wire.Error{Code: wire.CodeBusy, Message: err.Error(), RetryAfterMs: s.retryAfterMs()}
		var a *answer
		if errors.As(err, &a) {
			e = a.e
		}
		cc.send(wire.MsgError, reqID, e)
		return
	}
	keys := make(map[string][]byte, len(w.Wraps))
	rec := make([]state.Wrap, 0, len(w.Wraps))
	for _, k := range w.Wraps {
		keys[k.Slave] = k.Key
		rec = append(rec, state.Wrap{Slave: k.Slave, Key: k.Key})
	}
	j.wraps = keys
	// A dispatch that overtook these wraps is waiting for the client to
	// answer a WrapRequest: answer it from them.
	if ch := j.wrapCh; ch != nil && j.slave != nil {
		if k := keys[j.slave.id.Name]; k != nil {
			select {
			case ch <- wire.Wrapped{JobID: j.id, Attempt: j.wrapAttempt, WrappedKey: k}:
				j.wrapCh = nil
			default:
			}
		}
	}
	f := s.proposeLocked(&state.Command{Kind: state.KindWraps, Job: j.id, Wraps: rec})
	s.mu.Unlock()
	if f != nil {
		if _, err := f.Wait(); err != nil {
			cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeBusy, Message: "wraps not stored: " + err.Error()})
			return
		}
	}
	cc.log.Info("job key wrapped ahead", "job", j.id, "slaves", len(keys))
	cc.send(wire.MsgAccepted, reqID, wire.Accepted{JobID: j.id})
}
