package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"kiln/master/state"
	"kiln/transport"
	"kiln/transport/wire"
)

// clientConn is a connected client or admin. Fields below peer are guarded
// by Server.mu.
type clientConn struct {
	*peer
	pending   map[string]*upload // by request id, from its Submit until the job is queued
	jobs      map[string]*job    // queued or running jobs of this client
	submitted int
	// closed remembers the last requests refused or whose upload failed,
	// with the answer: a file stream for one is closed at once, and a
	// Submit after its dropped file gets the answer.
	closed []closedReq
	// subSignal is closed and replaced at every Submit: it wakes the file
	// streams waiting for theirs.
	subSignal chan struct{}
	files     chan struct{} // a token per file stream being read
	// waiting counts the file streams waiting for their Submit, by
	// request id and kind ("7/source"): a Submit that carries that file
	// inline too is refused.
	waiting map[string]int
	// inlined remembers the last requests whose files all came inline: a
	// file stream for one is refused at once.
	inlined []string
	// quiet: the session negotiated wire.FeatureQuiet; it is sent no
	// progress JobState (see progress).
	quiet bool
}

// progress sends the client a JobState it asked to hear (see
// wire.FeatureQuiet): every one unless the session is quiet. Requeued
// states are sent with send, always: they void the output so far.
func (cc *clientConn) progress(st wire.JobState) {
	if !cc.quiet {
		cc.send(wire.MsgJobState, 0, st)
	}
}

// closedReq is a request whose files are not wanted, and the answer it got.
type closedReq struct {
	key string
	err wire.Error
}

// maxClosed is how many closed requests a session remembers.
const maxClosed = 64

func newClientConn(p *peer, b JobBudget) *clientConn {
	return &clientConn{peer: p, pending: map[string]*upload{}, jobs: map[string]*job{},
		subSignal: make(chan struct{}), files: make(chan struct{}, b.FilesPerSession), waiting: map[string]int{},
		quiet: wire.HasFeature(p.hello.Features, wire.FeatureQuiet)}
}

// closeReqLocked remembers that request key is over. s.mu is held.
func (cc *clientConn) closeReqLocked(key string, e wire.Error) {
	if len(cc.closed) >= maxClosed {
		cc.closed = slices.Delete(cc.closed, 0, 1)
	}
	cc.closed = append(cc.closed, closedReq{key, e})
}

// closedLocked returns the answer of closed request key. s.mu is held.
func (cc *clientConn) closedLocked(key string) (wire.Error, bool) {
	for _, c := range cc.closed {
		if c.key == key {
			return c.err, true
		}
	}
	return wire.Error{}, false
}

// inlinedLocked remembers that request key's files all came inline.
// s.mu is held.
func (cc *clientConn) inlinedLocked(key string) {
	if len(cc.inlined) >= maxClosed {
		cc.inlined = slices.Delete(cc.inlined, 0, 1)
	}
	cc.inlined = append(cc.inlined, key)
}

// upload is a Submit waiting for its files, which travel inline in it or
// on their own streams. It exists only from its Submit: a file stream
// without one waits for it (JobBudget.SubmitWait), unread, then is closed.
type upload struct {
	reqID    uint64
	submit   wire.Submit
	source   payload
	haveSrc  bool
	srcSum   []byte
	stdin    payload
	haveIn   bool
	stdinSum []byte
	started  time.Time
	failed   bool  // answered with an Error; its files are discarded
	held     int64 // bytes of its files counted in Server.held
	// inSrc and inStdin are set for the files that came inline.
	inSrc, inStdin bool
}

func (u *upload) complete() bool {
	return u.haveSrc && (u.haveIn || u.submit.StdinSize == 0)
}

// maxPending bounds the uploads one client session may have in flight.
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
		cc.throttle(ctx)
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
		if j.slave != nil {
			j.slave.clientLeft(j.id)
		}
		if s.durable() {
			continue // the job goes on: its client may attach again
		}
		switch j.state {
		case wire.StateQueued:
			s.queue.remove(j)
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
		s.releaseLocked(cc.id.Fingerprint, &u.held)
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
		var req wire.InfoRequest
		if err := wire.Decode(env, &req); err != nil {
			return err
		}
		info := s.Info()
		if req.SealFor != "" {
			s.mu.Lock()
			info.SealSlaves = s.sealSlavesLocked(req.SealFor)
			s.mu.Unlock()
		}
		cc.send(wire.MsgInfo, env.ID, info)
	case wire.MsgAttach:
		var a wire.Attach
		if err := wire.Decode(env, &a); err != nil {
			return err
		}
		s.attach(cc, env.ID, a.JobID)
	case wire.MsgListJobs:
		s.listJobs(cc, env.ID)
	case wire.MsgWraps:
		var w wire.Wraps
		if err := wire.Decode(env, &w); err != nil {
			return err
		}
		s.wraps(cc, env.ID, w)
	case wire.MsgAdminRequest:
		var req wire.AdminRequest
		if err := wire.Decode(env, &req); err != nil {
			return err
		}
		if cc.id.Role != wire.RoleAdmin {
			cc.log.Warn("admin command refused: not an admin key", "args", logArgs(req.Args))
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

// submit validates a Submit and opens its upload, or answers it with an
// Error at once; the files of a refused Submit are closed unread. A Submit
// whose files all came inline is queued at once.
func (s *Server) submit(cc *clientConn, reqID uint64, sub wire.Submit) {
	key := strconv.FormatUint(reqID, 10)
	// The job keeps its files as payloads, not in its Submit (nor in its
	// durable record's Submit).
	in := sub.Inline
	sub.Inline = wire.Inline{}
	e := s.checkSubmit(&sub)
	if e == nil {
		e = checkTests(cc, &sub)
	}
	if e == nil {
		e = checkInline(cc, &sub, in)
	}
	s.mu.Lock()
	prev, closed := cc.closedLocked(key)
	switch {
	case closed && cc.pending[key] == nil:
		e = &prev // its file came first and was refused
	case e == nil:
		e = s.admitSubmitLocked(cc, key)
	}
	if e == nil {
		e = bothWaysLocked(cc, key, in)
	}
	var u *upload
	if e == nil {
		u = &upload{reqID: reqID, submit: sub, started: s.cfg.Now()}
		if e = s.chargeAnswerLocked(cc, u, kept(&sub)); e == nil {
			e = s.takeInlineLocked(cc, u, in)
		}
		if e != nil {
			s.releaseLocked(cc.id.Fingerprint, &u.held)
		}
	}
	queue := false
	switch {
	case e == nil && u.complete():
		queue = true
		cc.inlinedLocked(key)
	case e == nil:
		cc.pending[key] = u
	default:
		if _, dup := cc.pending[key]; !dup && !closed {
			cc.closeReqLocked(key, *e)
		}
	}
	close(cc.subSignal)
	cc.subSignal = make(chan struct{})
	s.mu.Unlock()
	switch {
	case e != nil:
		cc.log.Info("submit refused", "code", e.Code, "reason", truncate(e.Message, 200))
		cc.send(wire.MsgError, reqID, *e)
	case queue:
		s.enqueue(cc, reqID, u)
	}
}

// checkInline refuses inline files from a session that did not negotiate
// wire.FeatureInline, and inline files that do not match the sizes the
// Submit announces or their SHA-256 (wire.CheckInline).
func checkInline(cc *clientConn, sub *wire.Submit, in wire.Inline) *wire.Error {
	bad := func(msg string) *wire.Error { return &wire.Error{Code: wire.CodeBadRequest, Message: msg} }
	switch {
	case in.Size() == 0:
		return nil
	case !wire.HasFeature(cc.hello.Features, wire.FeatureInline):
		return bad("inline files need the \"inline\" feature in Hello")
	}
	if err := wire.CheckInline(in, sub.SourceSize, sub.StdinSize, sub.Sealed); err != nil {
		return bad(err.Error())
	}
	return nil
}

// bothWaysLocked refuses a Submit carrying inline a file whose stream is
// already waiting for it. s.mu is held.
func bothWaysLocked(cc *clientConn, key string, in wire.Inline) *wire.Error {
	for _, f := range []struct {
		kind   string
		inline bool
	}{{wire.FileSource, len(in.Source) > 0}, {wire.FileStdin, len(in.Stdin) > 0}} {
		if f.inline && cc.waiting[key+"/"+f.kind] > 0 {
			return &wire.Error{Code: wire.CodeBadRequest,
				Message: fmt.Sprintf("request %s sent its %s both inline and on a file stream", key, f.kind)}
		}
	}
	return nil
}

// kept is what a Submit's job keeps of it beyond its files while it is
// queued or running, in bytes: its key wraps above all (up to 64 × 1,152
// B), its names, keys and options. It counts against the upload budgets
// like the files (TestHostileClientSubmitMetadataCounted).
func kept(sub *wire.Submit) int64 {
	n := len(sub.Language) + len(sub.FileName) + len(sub.ClientKey) + len(sub.KeyNonce) + len(sub.WrapNonce)
	for _, w := range sub.Wraps {
		n += len(w.Slave) + len(w.Key) + len(w.SealKey)
	}
	for _, o := range sub.Options {
		n += len(o)
	}
	return int64(n)
}

// chargeAnswerLocked is chargeLocked answering a refusal as the Error
// to send. s.mu is held.
func (s *Server) chargeAnswerLocked(cc *clientConn, u *upload, n int64) *wire.Error {
	if err := s.chargeLocked(cc, u, n); err != nil {
		var a *answer
		if errors.As(err, &a) {
			return &a.e
		}
		return &wire.Error{Code: wire.CodeBadRequest, Message: err.Error()}
	}
	return nil
}

// takeInlineLocked charges a Submit's inline files to the budgets, as
// streamed bytes are (see charge), and gives them to its upload. s.mu is
// held.
func (s *Server) takeInlineLocked(cc *clientConn, u *upload, in wire.Inline) *wire.Error {
	if in.Size() == 0 {
		return nil
	}
	if e := s.chargeAnswerLocked(cc, u, int64(in.Size())); e != nil {
		return e
	}
	s.cfg.Metrics.bytes("upload", in.Size())
	if len(in.Source) > 0 {
		u.source, u.srcSum, u.haveSrc, u.inSrc = payload{in.Source}, in.SourceSHA256, true, true
	}
	if len(in.Stdin) > 0 {
		u.stdin, u.stdinSum, u.haveIn, u.inStdin = payload{in.Stdin}, in.StdinSHA256, true, true
	}
	return nil
}

// checkSubmit checks a Submit against the master's limits and sets its
// job limits to the ones it will run under (see limits.Policy.Apply).
func (s *Server) checkSubmit(sub *wire.Submit) *wire.Error {
	bad := func(code, format string, args ...any) *wire.Error {
		return &wire.Error{Code: code, Message: fmt.Sprintf(format, args...)}
	}
	if e := s.checkLanguage(*sub); e != nil {
		return e
	}
	switch {
	case (len(sub.Wraps) > 0 || len(sub.WrapNonce) > 0) && !sub.Sealed:
		return bad(wire.CodeBadRequest, "key wraps for a job that is not sealed")
	case len(sub.WrapNonce) > 0 && len(sub.WrapNonce) != wire.WrapNonceSize:
		return bad(wire.CodeBadRequest, "wrap_nonce is %d bytes, want %d", len(sub.WrapNonce), wire.WrapNonceSize)
	case len(sub.Wraps) > 0 && len(sub.WrapNonce) == 0:
		return bad(wire.CodeBadRequest, "key wraps without their wrap_nonce")
	case sub.SourceSize <= 0:
		return bad(wire.CodeBadRequest, "empty source file")
	case sub.SourceSize > s.cfg.Limits.MaxSource:
		return bad(wire.CodeTooLarge, "source is %d bytes; the limit is %d", sub.SourceSize, s.cfg.Limits.MaxSource)
	case sub.StdinSize < 0 || sub.StdinSize > s.cfg.Limits.MaxStdin:
		return bad(wire.CodeTooLarge, "stdin is %d bytes; the limit is %d", sub.StdinSize, s.cfg.Limits.MaxStdin)
	}
	applied, err := s.cfg.JobLimits.Apply(sub.Language, sub.Limits)
	if err != nil {
		return bad(wire.CodeTooLarge, "%v", err)
	}
	sub.Limits = applied
	return nil
}

// admitSubmitLocked refuses a Submit the master has no room for now,
// before any of its bytes are read. s.mu is held.
func (s *Server) admitSubmitLocked(cc *clientConn, key string) *wire.Error {
	busy := func(format string, args ...any) *wire.Error {
		return &wire.Error{Code: wire.CodeBusy, Message: fmt.Sprintf(format, args...), RetryAfterMs: s.retryAfterMs()}
	}
	switch {
	case cc.pending[key] != nil:
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("request %s is already in flight", key)}
	case len(cc.pending) >= maxPending:
		return busy("too many uploads in flight on this session (%d)", maxPending)
	case s.active[cc.id.Fingerprint] >= s.cfg.Budget.Jobs.JobsPerClient:
		return busy("this key has %d jobs queued or running, its limit", s.active[cc.id.Fingerprint])
	case s.queue.len()+s.writing >= s.cfg.Limits.MaxQueue:
		return busy("queue full (%d jobs waiting)", s.cfg.Limits.MaxQueue)
	}
	return nil
}

// acceptFiles receives the client's file streams, reading up to
// JobBudget.FilesPerSession of them at once.
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
		select {
		case cc.files <- struct{}{}:
		case <-ctx.Done():
			return
		}
		hdr, body, err := cc.sess.AcceptFile(ctx)
		if err != nil {
			<-cc.files
			if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
				return
			}
			continue
		}
		s.goRun(func() {
			defer func() { <-cc.files }()
			// The token is held until the peer's bytes are gone from the
			// transport, not only until this side closed the stream.
			defer transport.DiscardFile(body, s.streamCloseTimeout())
			s.receiveFile(cc, hdr, body)
		})
	}
}

// answer is an error that carries the Error to send the client.
type answer struct{ e wire.Error }

func (a *answer) Error() string { return a.e.Message }

// streamCloseTimeout is how long a stream closed by this side may keep
// what its peer sends buffered in the transport.
func (s *Server) streamCloseTimeout() time.Duration {
	if d := s.cfg.Transport.StreamCloseTimeout; d > 0 {
		return d
	}
	return transport.DefaultConfig().StreamCloseTimeout
}

// errNoSubmit reports a file stream whose Submit never came.
var errNoSubmit = errors.New("no Submit for this file")

// errInlined reports a file stream for a request whose files all came
// inline in its Submit (the job goes on with those).
var errInlined = errors.New("a file stream for a Submit that carried its files inline")

// receiveFile reads one uploaded file into its upload, charging the
// master's budgets as its bytes arrive, or refuses it and the upload.
func (s *Server) receiveFile(cc *clientConn, hdr wire.FileHeader, body io.ReadCloser) {
	key := hdr.JobID
	if _, err := strconv.ParseUint(key, 10, 64); err != nil {
		cc.log.Warn("upload refused", "job", truncate(key, 40), "err", "file for no request")
		return
	}
	u := s.awaitSubmit(cc, key, hdr.Kind)
	if u == nil {
		s.mu.Lock()
		inlined := slices.Contains(cc.inlined, key)
		_, answered := cc.closedLocked(key)
		answered = answered || inlined
		if !answered {
			cc.closeReqLocked(key, wire.Error{Code: wire.CodeBadRequest,
				Message: fmt.Sprintf("its file came more than %s before the Submit", s.cfg.Budget.Jobs.SubmitWait)})
		}
		s.mu.Unlock()
		switch {
		case inlined:
			cc.log.Warn("upload refused", "job", key, "kind", truncate(hdr.Kind, 20), "err", errInlined)
		case !answered:
			cc.log.Warn("upload refused", "job", key, "kind", truncate(hdr.Kind, 20), "err", errNoSubmit)
		}
		return
	}
	if err := s.checkFile(u, hdr); err != nil {
		s.failUpload(cc, key, u, wire.Error{Code: wire.CodeBadRequest, Message: err.Error()})
		return
	}
	data, err := s.readFile(cc, u, hdr, body)
	if err != nil {
		e := wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("upload of the %s refused: %v", hdr.Kind, err)}
		var a *answer
		if errors.As(err, &a) {
			e = a.e
		}
		cc.log.Warn("upload refused", "job", key, "kind", hdr.Kind, "err", e.Message)
		s.failUpload(cc, key, u, e)
		return
	}
	s.cfg.Metrics.bytes("upload", int(hdr.Size))
	s.mu.Lock()
	if u.failed {
		s.mu.Unlock()
		return
	}
	if hdr.Kind == wire.FileSource {
		u.source, u.srcSum, u.haveSrc = data, hdr.SHA256, true
	} else {
		u.stdin, u.stdinSum, u.haveIn = data, hdr.SHA256, true
	}
	done := u.complete()
	if done {
		delete(cc.pending, key)
	}
	s.mu.Unlock()
	if done {
		s.enqueue(cc, u.reqID, u)
	}
}

// awaitSubmit returns the upload a file stream of request key belongs to,
// waiting up to JobBudget.SubmitWait for its Submit; nil when the request
// was refused, its files all came inline or its Submit did not come. While
// it waits the stream counts in cc.waiting under key and kind.
func (s *Server) awaitSubmit(cc *clientConn, key, kind string) *upload {
	t := time.NewTimer(s.cfg.Budget.Jobs.SubmitWait)
	defer t.Stop()
	wkey := key + "/" + kind
	s.mu.Lock()
	cc.waiting[wkey]++
	first := cc.subSignal
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if cc.waiting[wkey]--; cc.waiting[wkey] <= 0 {
			delete(cc.waiting, wkey)
		}
		s.mu.Unlock()
	}()
	for {
		s.mu.Lock()
		u := cc.pending[key]
		_, closed := cc.closedLocked(key)
		inlined := slices.Contains(cc.inlined, key)
		sig := cc.subSignal
		s.mu.Unlock()
		switch {
		case u != nil && !u.failed:
			return u
		case u != nil || closed || inlined:
			return nil
		}
		if sig == first {
			cc.log.Debug("file stream waits for its Submit", "job", key, "kind", truncate(kind, 20))
		}
		select {
		case <-sig:
		case <-t.C:
			return nil
		case <-cc.done:
			return nil
		}
	}
}

// checkFile checks a file header against its Submit.
func (s *Server) checkFile(u *upload, hdr wire.FileHeader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var want int64
	var have, inline bool
	switch hdr.Kind {
	case wire.FileSource:
		want, have, inline = u.submit.SourceSize, u.haveSrc, u.inSrc
	case wire.FileStdin:
		want, have, inline = u.submit.StdinSize, u.haveIn, u.inStdin
	default:
		return fmt.Errorf("unknown file kind %q", truncate(hdr.Kind, 20))
	}
	switch {
	case inline:
		return fmt.Errorf("the %s came both inline in the Submit and on a file stream", hdr.Kind)
	case want == 0:
		return fmt.Errorf("a %s the Submit did not announce", hdr.Kind)
	case hdr.Size != want:
		return fmt.Errorf("uploaded files do not match the sizes announced in Submit: %s of %d bytes, %d announced", hdr.Kind, hdr.Size, want)
	case have:
		return fmt.Errorf("a second %s for one Submit", hdr.Kind)
	}
	return nil
}

// readFile reads a file of upload u, charging each chunk to the budgets
// before it is allocated. The stream is closed when it delivers no chunk
// for JobBudget.UploadIdle, or at the upload's deadline (UploadTimeout
// after its Submit). A charge refused for the budgets returns a busy
// *wire.Error.
func (s *Server) readFile(cc *clientConn, u *upload, hdr wire.FileHeader, body io.ReadCloser) (payload, error) {
	idle := s.cfg.Budget.Jobs.UploadIdle
	var stalled, late atomic.Bool
	watch := time.AfterFunc(idle, func() { stalled.Store(true); body.Close() })
	defer watch.Stop()
	end := time.AfterFunc(time.Until(u.started.Add(s.cfg.UploadTimeout)), func() { late.Store(true); body.Close() })
	defer end.Stop()
	charge := func(n int64) error { return s.charge(cc, u, n) }
	data, err := readPayload(body, hdr.Size, charge, func() { watch.Reset(idle) })
	switch {
	case err == nil:
		return data, nil
	case late.Load():
		return nil, fmt.Errorf("upload not finished within %s", s.cfg.UploadTimeout)
	case stalled.Load():
		return nil, fmt.Errorf("no bytes for %s", idle)
	}
	return nil, err
}

// charge counts n more bytes of upload u against the master's budget and
// its client key's share of it (Config.MaxHeldBytes,
// JobBudget.HeldBytesPerClient). The last eighth of the budget is kept for
// keys that hold less than one job's largest files (MaxSource + MaxStdin),
// so that a few keys at their share cannot lock every other client out.
// Past any of these the upload is refused busy.
func (s *Server) charge(cc *clientConn, u *upload, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chargeLocked(cc, u, n)
}

// chargeLocked is charge with s.mu held.
func (s *Server) chargeLocked(cc *clientConn, u *upload, n int64) error {
	if u.failed {
		return errors.New("upload already refused")
	}
	return s.chargeKeyLocked(cc.id.Fingerprint, &u.held, n)
}

// chargeKeyLocked counts n more bytes held for client key owner, in
// *held too, or refuses them busy (see charge). s.mu is held.
func (s *Server) chargeKeyLocked(owner string, held *int64, n int64) error {
	light := s.heldBy[owner]+n <= s.cfg.Limits.MaxSource+s.cfg.Limits.MaxStdin
	switch {
	case !light && s.held+n > s.cfg.MaxHeldBytes-s.cfg.MaxHeldBytes/8:
		return &answer{wire.Error{Code: wire.CodeBusy, RetryAfterMs: s.retryAfterMs(),
			Message: fmt.Sprintf("the master holds %d bytes of uploaded files; the rest is kept for clients holding less than this key's %d; retry later", s.held, s.heldBy[owner])}}
	case s.held+n > s.cfg.MaxHeldBytes:
		return &answer{wire.Error{Code: wire.CodeBusy, RetryAfterMs: s.retryAfterMs(),
			Message: fmt.Sprintf("the master holds %d bytes of uploaded files, its limit; retry later", s.held)}}
	case s.heldBy[owner]+n > s.cfg.Budget.Jobs.HeldBytesPerClient:
		return &answer{wire.Error{Code: wire.CodeBusy, RetryAfterMs: s.retryAfterMs(),
			Message: fmt.Sprintf("this key holds %d bytes of uploaded files on the master, its limit; retry later", s.heldBy[owner])}}
	}
	s.held += n
	s.heldBy[owner] += n
	*held += n
	return nil
}

// failUpload ends upload u of request key with the answer e (sent at most
// once) and gives back the bytes it held.
func (s *Server) failUpload(cc *clientConn, key string, u *upload, e wire.Error) {
	s.mu.Lock()
	if u.failed {
		s.mu.Unlock()
		return
	}
	u.failed = true
	s.releaseLocked(cc.id.Fingerprint, &u.held)
	if cc.pending[key] == u {
		delete(cc.pending, key)
	}
	cc.closeReqLocked(key, e)
	s.mu.Unlock()
	cc.send(wire.MsgError, u.reqID, e)
}

// releaseLocked gives back *n bytes held for client key owner and zeroes
// *n. s.mu is held.
func (s *Server) releaseLocked(owner string, n *int64) {
	s.held -= *n
	if s.heldBy[owner] -= *n; s.heldBy[owner] <= 0 {
		delete(s.heldBy, owner)
	}
	*n = 0
}

// checkUploads fails uploads not finished within UploadTimeout of their
// Submit (their streams close themselves at that deadline too).
func (s *Server) checkUploads() {
	now := s.cfg.Now()
	type stale struct {
		cc  *clientConn
		key string
		u   *upload
	}
	var st []stale
	s.mu.Lock()
	for cc := range s.clients {
		for key, u := range cc.pending {
			if now.Sub(u.started) > s.cfg.UploadTimeout {
				st = append(st, stale{cc, key, u})
			}
		}
	}
	s.mu.Unlock()
	for _, x := range st {
		s.failUpload(x.cc, x.key, x.u, wire.Error{Code: wire.CodeBadRequest,
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
		s.queue.remove(j)
		s.waitLogged(s.proposeLocked(&state.Command{Kind: state.KindCancel, Job: j.id, Reason: "cancelled before it ran"}), "cancel", j.id)
		s.finishLocked(j, wire.StatusCancelled)
		s.mu.Unlock()
		cc.log.Info("job cancelled while queued", "job", jobID)
		cc.send(wire.MsgResult, 0, wire.Result{JobID: jobID, Attempt: j.attempt, Status: wire.StatusCancelled,
			Language: j.submit.Language, Detail: "cancelled before it ran"})
		cc.progress(wire.JobState{JobID: jobID, State: wire.StateDone, Attempt: j.attempt})
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
