package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"kiln/transport/wire"
)

// clientConn is a connected client or admin. Fields below peer are guarded
// by Server.mu.
type clientConn struct {
	*peer
	pending   map[string]*upload // by request id, until the job is queued
	jobs      map[string]*job    // queued or running jobs of this client
	submitted int
}

// upload gathers a Submit and its files, which travel on separate streams
// and may arrive in any order.
type upload struct {
	reqID    uint64
	submit   wire.Submit
	haveSub  bool
	source   []byte
	haveSrc  bool
	srcSum   []byte
	stdin    []byte
	haveIn   bool
	stdinSum []byte
	started  time.Time
	failed   bool   // refused; files still arriving are discarded
	held     int64  // bytes of its files counted in Server.held
	busyMsg  string // set when a file was refused for the memory budget before the Submit came
	badMsg   string // set when a file was refused as corrupt before the Submit came
}

func (u *upload) complete() bool {
	return u.haveSub && u.haveSrc && (u.haveIn || u.submit.StdinSize == 0)
}

// maxPending bounds the uploads one client may have in flight.
const maxPending = 64

// runClient serves one client session until it ends.
func (s *Server) runClient(ctx context.Context, cc *clientConn) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		cc.refuse(wire.CodeShutdown, "master is shutting down")
		return
	}
	s.clients[cc] = struct{}{}
	s.mu.Unlock()
	s.cfg.Metrics.peers(cc.id.Role, 1)
	defer s.dropClient(cc)
	s.goRun(func() { s.acceptFiles(ctx, cc) })
	for {
		env, err := cc.sess.Recv()
		if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrMalformed) {
			cc.log.Warn("garbage on the control stream", "err", err)
			cc.refuse(wire.CodeBadRequest, err.Error())
			return
		}
		if err != nil {
			select {
			case <-cc.done:
			default:
				cc.log.Info("client disconnected", "err", err)
			}
			return
		}
		if err := s.clientMessage(ctx, cc, env); err != nil {
			cc.log.Warn("bad message from client", "type", env.Type, "err", err)
			cc.refuse(wire.CodeBadRequest, err.Error())
			return
		}
	}
}

// dropClient forgets a client: its queued jobs are dropped and its running
// jobs cancelled on their slaves.
func (s *Server) dropClient(cc *clientConn) {
	cc.close()
	s.mu.Lock()
	delete(s.clients, cc)
	var cancels []func()
	for _, j := range cc.jobs {
		j.client = nil
		switch j.state {
		case wire.StateQueued:
			s.unqueueLocked(j)
			s.finishLocked(j, wire.StatusCancelled)
		default:
			if sc := j.slave; sc != nil && !j.assignSent {
				j.cancelPending = true // sendJob sends it after the Assign
			} else if sc != nil {
				id := j.id
				cancels = append(cancels, func() { sc.send(wire.MsgCancel, 0, wire.Cancel{JobID: id}) })
			}
		}
	}
	for _, u := range cc.pending {
		s.releaseLocked(&u.held)
	}
	clear(cc.pending)
	for _, h := range s.history {
		if h.client == cc {
			h.client = nil // the history must not keep a departed client's session alive
		}
	}
	s.mu.Unlock()
	s.cfg.Metrics.peers(cc.id.Role, -1)
	for _, c := range cancels {
		c()
	}
}

func (s *Server) clientMessage(ctx context.Context, cc *clientConn, env wire.Envelope) error {
	switch env.Type {
	case wire.MsgSubmit:
		var sub wire.Submit
		if err := wire.Decode(env, &sub); err != nil {
			return err
		}
		s.submit(cc, env.ID, sub)
	case wire.MsgCancel:
		var c wire.Cancel
		if err := wire.Decode(env, &c); err != nil {
			return err
		}
		s.cancel(cc, c.JobID)
	case wire.MsgInfoRequest:
		cc.send(wire.MsgInfo, env.ID, s.Info())
	case wire.MsgAdminRequest:
		var req wire.AdminRequest
		if err := wire.Decode(env, &req); err != nil {
			return err
		}
		if cc.id.Role != wire.RoleAdmin {
			cc.log.Warn("admin command refused: not an admin key", "args", req.Args)
			cc.send(wire.MsgError, env.ID, wire.Error{Code: wire.CodeForbidden,
				Message: fmt.Sprintf("admin commands need an admin key; %s is a %s key", cc.id.Name, cc.id.Role)})
			return nil
		}
		reply, err := s.Admin(ctx, cc.id.Name, req.Args)
		if err != nil {
			var ae *AdminError
			code := wire.CodeBadRequest
			if errors.As(err, &ae) {
				code = ae.Code
			}
			cc.send(wire.MsgError, env.ID, wire.Error{Code: code, Message: err.Error()})
			return nil
		}
		cc.send(wire.MsgAdminReply, env.ID, reply)
	case wire.MsgWrapped:
		var w wire.Wrapped
		if err := wire.Decode(env, &w); err != nil {
			return err
		}
		s.wrapped(cc, w)
	default:
		return fmt.Errorf("unexpected %v on a client session", env.Type)
	}
	return nil
}

// submit validates a Submit and waits for its files.
func (s *Server) submit(cc *clientConn, reqID uint64, sub wire.Submit) {
	fail := func(code, msg string) {
		cc.log.Info("submit refused", "code", code, "reason", msg)
		cc.send(wire.MsgError, reqID, wire.Error{Code: code, Message: msg})
	}
	switch {
	case wire.LanguageOf(sub.FileName) == "" || wire.LanguageOf(sub.FileName) != sub.Language:
		fail(wire.CodeBadRequest, fmt.Sprintf("file %q is not a %s source (.c, .cpp, .java or .py)", sub.FileName, sub.Language))
	case sub.SourceSize <= 0:
		fail(wire.CodeBadRequest, "empty source file")
	case sub.SourceSize > s.cfg.Limits.MaxSource:
		fail(wire.CodeTooLarge, fmt.Sprintf("source is %d bytes; the limit is %d", sub.SourceSize, s.cfg.Limits.MaxSource))
	case sub.StdinSize < 0 || sub.StdinSize > s.cfg.Limits.MaxStdin:
		fail(wire.CodeTooLarge, fmt.Sprintf("stdin is %d bytes; the limit is %d", sub.StdinSize, s.cfg.Limits.MaxStdin))
	case sub.Limits.OutputBytes > s.cfg.Limits.MaxOutput:
		fail(wire.CodeTooLarge, fmt.Sprintf("output limit %d exceeds the master's cap %d", sub.Limits.OutputBytes, s.cfg.Limits.MaxOutput))
	default:
		s.mu.Lock()
		key := strconv.FormatUint(reqID, 10)
		u := cc.pending[key]
		if u == nil {
			if len(cc.pending) >= maxPending {
				s.mu.Unlock()
				fail(wire.CodeBusy, "too many uploads in flight")
				return
			}
			u = &upload{reqID: reqID, started: s.cfg.Now()}
			cc.pending[key] = u
		}
		u.submit, u.haveSub, u.reqID = sub, true, reqID
		if u.failed && u.busyMsg != "" {
			msg := u.busyMsg
			s.mu.Unlock()
			cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeBusy, Message: msg, RetryAfterMs: 2000})
			return
		}
		if u.failed && u.badMsg != "" {
			msg := u.badMsg
			s.mu.Unlock()
			cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeBadRequest, Message: msg})
			return
		}
		done := s.checkUploadLocked(cc, key, u)
		s.mu.Unlock()
		done()
		return
	}
	s.mu.Lock()
	if u := cc.pending[strconv.FormatUint(reqID, 10)]; u != nil {
		u.failed = true
	} else {
		cc.pending[strconv.FormatUint(reqID, 10)] = &upload{reqID: reqID, failed: true, started: s.cfg.Now()}
	}
	s.mu.Unlock()
}

// checkUploadLocked moves a complete upload to the queue; it returns what to
// do once s.mu is released.
func (s *Server) checkUploadLocked(cc *clientConn, key string, u *upload) func() {
	if u.failed || !u.complete() {
		return func() {}
	}
	delete(cc.pending, key)
	if int64(len(u.source)) != u.submit.SourceSize || int64(len(u.stdin)) != u.submit.StdinSize {
		s.releaseLocked(&u.held)
		return func() {
			cc.send(wire.MsgError, u.reqID, wire.Error{Code: wire.CodeBadRequest,
				Message: "uploaded files do not match the sizes announced in Submit"})
		}
	}
	return func() { s.enqueue(cc, u.reqID, u) }
}

// acceptFiles receives the client's file streams.
func (s *Server) acceptFiles(ctx context.Context, cc *clientConn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-cc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		hdr, body, err := cc.sess.AcceptFile(ctx)
		if err != nil {
			return
		}
		if err := s.receiveFile(cc, hdr, body); err != nil {
			cc.log.Warn("upload refused", "job", hdr.JobID, "kind", hdr.Kind, "err", err)
			if _, perr := strconv.ParseUint(hdr.JobID, 10, 64); perr == nil {
				// Answer the request now rather than at the upload timeout
				// (a no-op when it was already answered, e.g. busy).
				s.failUpload(cc, hdr.JobID, fmt.Sprintf("upload of the %s refused: %v", hdr.Kind, err))
			}
		}
		body.Close()
	}
}

// receiveFile reads one uploaded file into its pending upload.
func (s *Server) receiveFile(cc *clientConn, hdr wire.FileHeader, body io.Reader) error {
	limit := s.cfg.Limits.MaxSource
	if hdr.Kind == wire.FileStdin {
		limit = s.cfg.Limits.MaxStdin
	} else if hdr.Kind != wire.FileSource {
		return fmt.Errorf("unknown file kind %q", hdr.Kind)
	}
	if hdr.Size < 0 || hdr.Size > limit {
		return fmt.Errorf("%s of %d bytes is over the %d-byte limit", hdr.Kind, hdr.Size, limit)
	}
	if _, err := strconv.ParseUint(hdr.JobID, 10, 64); err != nil {
		return fmt.Errorf("file for unknown request %q", hdr.JobID)
	}
	if err := s.reserve(cc, hdr); err != nil {
		return err
	}
	size := hdr.Size
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(body, data); err != nil {
		s.release(size)
		return err
	}
	n, err := body.Read(make([]byte, 1))
	if n != 0 {
		s.release(size)
		return errors.New("file longer than its header says")
	}
	if !errors.Is(err, io.EOF) { // io.ReadFull drops an error that came with the last bytes, such as a checksum mismatch
		s.release(size)
		s.failUpload(cc, hdr.JobID, fmt.Sprintf("uploaded %s refused: %v", hdr.Kind, err))
		return err
	}
	s.cfg.Metrics.bytes("upload", len(data))
	s.mu.Lock()
	u := cc.pending[hdr.JobID]
	if u == nil {
		if len(cc.pending) >= maxPending {
			s.releaseLocked(&size)
			s.mu.Unlock()
			return errors.New("too many uploads in flight")
		}
		u = &upload{started: s.cfg.Now()}
		cc.pending[hdr.JobID] = u
	}
	u.held += size
	if hdr.Kind == wire.FileSource {
		u.source, u.srcSum, u.haveSrc = data, hdr.SHA256, true
	} else {
		u.stdin, u.stdinSum, u.haveIn = data, hdr.SHA256, true
	}
	done := s.checkUploadLocked(cc, hdr.JobID, u)
	s.mu.Unlock()
	done()
	return nil
}

// failUpload refuses the upload of request key as bad: its client gets
// the Error now if the Submit came, else when it comes.
func (s *Server) failUpload(cc *clientConn, key, msg string) {
	s.mu.Lock()
	u := cc.pending[key]
	if u == nil && len(cc.pending) < maxPending {
		u = &upload{started: s.cfg.Now()}
		cc.pending[key] = u
	}
	answer := u != nil && !u.failed && u.haveSub
	var reqID uint64
	if answer {
		reqID = u.reqID
	} else if u != nil {
		u.badMsg = msg
	}
	if u != nil {
		u.failed = true
	}
	s.mu.Unlock()
	if answer {
		cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeBadRequest, Message: msg})
	}
}

// reserve counts a file about to be read into memory against the master's
// budget for held files (Config.MaxHeldBytes). Past the budget the request
// is answered busy at once and its files are discarded.
func (s *Server) reserve(cc *clientConn, hdr wire.FileHeader) error {
	s.mu.Lock()
	if s.held+hdr.Size <= s.cfg.MaxHeldBytes {
		s.held += hdr.Size
		s.mu.Unlock()
		return nil
	}
	held := s.held
	u := cc.pending[hdr.JobID]
	if u == nil && len(cc.pending) < maxPending {
		u = &upload{started: s.cfg.Now()}
		cc.pending[hdr.JobID] = u
	}
	msg := fmt.Sprintf("the master holds %d bytes of queued files, its limit; retry later", held)
	answer := u != nil && !u.failed && u.haveSub
	var reqID uint64
	if answer {
		reqID = u.reqID
	} else if u != nil {
		u.busyMsg = msg
	}
	if u != nil {
		u.failed = true
	}
	s.mu.Unlock()
	if answer {
		cc.send(wire.MsgError, reqID, wire.Error{Code: wire.CodeBusy, Message: msg, RetryAfterMs: 2000})
	}
	return errors.New(msg)
}

// release gives back n reserved bytes.
func (s *Server) release(n int64) {
	s.mu.Lock()
	s.releaseLocked(&n)
	s.mu.Unlock()
}

// releaseLocked gives back *n held bytes and zeroes *n. s.mu is held.
func (s *Server) releaseLocked(n *int64) {
	s.held -= *n
	*n = 0
}

// checkUploads fails uploads that stalled, and forgets refused ones.
func (s *Server) checkUploads() {
	now := s.cfg.Now()
	type stale struct {
		cc *clientConn
		u  *upload
	}
	var st []stale
	s.mu.Lock()
	for cc := range s.clients {
		for key, u := range cc.pending {
			if now.Sub(u.started) > s.cfg.UploadTimeout {
				s.releaseLocked(&u.held)
				delete(cc.pending, key)
				if !u.failed && u.haveSub {
					st = append(st, stale{cc, u})
				}
			}
		}
	}
	s.mu.Unlock()
	for _, x := range st {
		x.cc.send(wire.MsgError, x.u.reqID, wire.Error{Code: wire.CodeBadRequest,
			Message: fmt.Sprintf("upload not finished within %s", s.cfg.UploadTimeout)})
	}
}

// cancel stops a job of this client: dropped from the queue, or stopped on
// its slave (which answers with a cancelled Result).
func (s *Server) cancel(cc *clientConn, jobID string) {
	s.mu.Lock()
	j := cc.jobs[jobID]
	if j == nil {
		s.mu.Unlock()
		return
	}
	if j.state == wire.StateQueued {
		s.unqueueLocked(j)
		s.finishLocked(j, wire.StatusCancelled)
		s.mu.Unlock()
		cc.log.Info("job cancelled while queued", "job", jobID)
		cc.send(wire.MsgResult, 0, wire.Result{JobID: jobID, Attempt: j.attempt, Status: wire.StatusCancelled,
			Language: j.submit.Language, Detail: "cancelled before it ran"})
		cc.send(wire.MsgJobState, 0, wire.JobState{JobID: jobID, State: wire.StateDone, Attempt: j.attempt})
		return
	}
	if ch := j.wrapCh; ch != nil {
		// Waiting for the key wrap: the slave has not seen the job yet.
		j.wrapCh = nil
		s.mu.Unlock()
		ch <- wire.Wrapped{JobID: jobID}
		return
	}
	sc := j.slave
	if sc != nil && !j.assignSent {
		j.cancelPending, sc = true, nil // sendJob sends it after the Assign
	}
	s.mu.Unlock()
	if sc != nil {
		cc.log.Info("job cancel forwarded", "job", jobID, "slave", sc.id.Name)
		sc.send(wire.MsgCancel, 0, wire.Cancel{JobID: jobID})
	}
}

// unqueueLocked removes j from the queue. s.mu is held.
func (s *Server) unqueueLocked(j *job) {
	for i, q := range s.queue {
		if q == j {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			return
		}
	}
}

// wrapped hands a client's answer to a WrapRequest to the assignment
// waiting for it. A late answer, for an attempt no longer waiting, is
// dropped.
func (s *Server) wrapped(cc *clientConn, w wire.Wrapped) {
	s.mu.Lock()
	var ch chan wire.Wrapped
	if j := cc.jobs[w.JobID]; j != nil && j.wrapCh != nil && j.wrapAttempt == w.Attempt {
		ch, j.wrapCh = j.wrapCh, nil
	}
	s.mu.Unlock()
	if ch == nil {
		cc.log.Debug("stale wrapped key dropped", "job", w.JobID, "attempt", w.Attempt)
		return
	}
	ch <- w
}
