package slave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"kiln/transport"
	"kiln/transport/wire"
)

// Caps of what one session buffers.
const (
	outputChunk      = 32 << 10 // bytes of data per Output message
	defaultMaxSource = 16 << 20 // when Welcome announces no limit
	defaultMaxStdin  = 64 << 20
	maxOrphans       = 64 // file sets waiting for their Assign
)

// conn is one session with the master: its jobs, the files waiting for
// them, and the goroutines serving it. It lives for one [Slave.session].
type conn struct {
	s       *Slave
	sess    *transport.Session
	welcome wire.Welcome
	log     *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*job   // assigned and not finished
	orphans map[string]*files // files that arrived before their Assign

	wg sync.WaitGroup // every goroutine of the session
}

// files holds the payloads of one job as they arrive.
type files struct {
	source, stdin         []byte
	haveSource, haveStdin bool
	inSource, inStdin     bool // the file came inline in the Assign
	sealed                bool
	at                    time.Time
	err                   error // a file of the job that could not be received
}

// errBothWays reports a file that came both inline in its Assign and on
// a file stream.
var errBothWays = errors.New("a file came both inline in the Assign and on a file stream")

// add records a received file, or the error that ended its stream.
func (f *files) add(hdr wire.FileHeader, data []byte, err error) {
	switch {
	case err != nil:
		f.err = err
	case (hdr.Kind == wire.FileSource && f.inSource) || (hdr.Kind == wire.FileStdin && f.inStdin):
		f.err = errBothWays
	default:
		f.set(hdr, data)
	}
}

// inline adds the files that came inside Assign a, after checking them
// against its sizes and sums; a file that came on a stream too is an
// error.
func (f *files) inline(a wire.Assign, in wire.Inline) {
	if in.Size() == 0 {
		return
	}
	if err := wire.CheckInline(in, a.SourceSize, a.StdinSize, a.Sealed); err != nil {
		f.err = err
		return
	}
	if (len(in.Source) > 0 && f.haveSource) || (len(in.Stdin) > 0 && f.haveStdin) {
		f.err = errBothWays
		return
	}
	f.sealed = f.sealed || a.Sealed
	if len(in.Source) > 0 {
		f.source, f.haveSource, f.inSource = in.Source, true, true
	}
	if len(in.Stdin) > 0 {
		f.stdin, f.haveStdin, f.inStdin = in.Stdin, true, true
	}
}

func (f *files) set(hdr wire.FileHeader, data []byte) {
	f.sealed = f.sealed || hdr.Sealed
	switch hdr.Kind {
	case wire.FileSource:
		f.source, f.haveSource = data, true
	case wire.FileStdin:
		f.stdin, f.haveStdin = data, true
	}
}

// job is one assignment on this session: it waits for its files, then
// for a slot, then runs. Its life beyond the session is its keeper entry's.
type job struct {
	assign wire.Assign
	kept   *kept
	files  files
	ready  chan struct{} // closed once every announced file arrived
	isSet  bool
}

func newConn(s *Slave, sess *transport.Session, w wire.Welcome) *conn {
	return &conn{
		s: s, sess: sess, welcome: w, log: s.log.With("session", w.SessionID),
		jobs: map[string]*job{}, orphans: map[string]*files{},
	}
}

// serve registers, then runs the read loop, the file loop and the load
// loop until the session ends or ctx does; it waits for all of them. The
// jobs run under runCtx (the Slave's): those that started executing are
// kept through the end of the session (see keeper), the others are
// abandoned with it.
func (c *conn) serve(runCtx context.Context, host HostInfo) error {
	ctx, cancel := context.WithCancel(runCtx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.sess.Close() })
	defer stop()
	defer c.wg.Wait()
	defer c.s.keep.detach(c.sess, time.Now())
	defer c.sess.Close()
	exec := c.s.cfg.Executor
	reg := wire.Register{
		Toolchains: exec.Toolchains(), OS: host.OS, Kernel: host.Kernel, Arch: host.Arch,
		CPUs: host.CPUs, MemBytes: host.MemBytes, Slots: c.s.cfg.Slots, Sandbox: exec.Sandbox(),
		SealKey: c.s.sealPub,
	}
	if err := c.s.keep.attach(c.sess, reg); err != nil {
		return err
	}
	c.sendLoad(ctx)
	c.wg.Go(func() { c.loadLoop(ctx) })
	c.wg.Go(func() { c.fileLoop(ctx) })
	err := c.readLoop(ctx, runCtx)
	cancel()
	return err
}

// readLoop handles control messages until the session fails or the master
// refuses this slave.
func (c *conn) readLoop(ctx, runCtx context.Context) error {
	for {
		e, err := c.sess.Recv()
		if err != nil {
			return err
		}
		switch e.Type {
		case wire.MsgAssign:
			var a wire.Assign
			if err := wire.Decode(e, &a); err != nil {
				c.log.Warn("bad Assign", "err", err)
				continue
			}
			c.assign(runCtx, a)
		case wire.MsgCancel:
			var m wire.Cancel
			if err := wire.Decode(e, &m); err == nil {
				c.cancel(m.JobID)
			}
		case wire.MsgRefused:
			var r wire.Refused
			if err := wire.Decode(e, &r); err != nil {
				return fmt.Errorf("slave: bad Refused from the master: %w", err)
			}
			return transport.NewRefusedError(r)
		default:
			c.log.Debug("ignored message", "type", e.Type)
		}
	}
}

// loadLoop reports the load every interval and drops stale orphan files.
func (c *conn) loadLoop(ctx context.Context) {
	t := time.NewTicker(c.s.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.sendLoad(ctx)
			c.dropStaleOrphans()
		case <-c.s.loadNow:
			c.sendLoad(ctx) // Drain: tell the master now
		}
	}
}

func (c *conn) sendLoad(ctx context.Context) {
	l := c.s.sampler.Sample(ctx, int(c.s.running.Load()), c.s.cfg.Slots)
	l.Health = c.s.health()
	if err := c.sess.Send(wire.MsgLoad, 0, &l); err != nil {
		c.log.Debug("load report not sent", "err", err)
	}
}

// fileLoop accepts file streams and reads each in its own goroutine.
func (c *conn) fileLoop(ctx context.Context) {
	for {
		hdr, rc, err := c.sess.AcceptFile(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, transport.ErrClosed) {
				return
			}
			c.log.Warn("bad file stream", "err", err)
			continue
		}
		c.wg.Go(func() {
			defer rc.Close()
			data, err := c.readFile(hdr, rc)
			if err != nil {
				c.log.Warn("file not received", "job", hdr.JobID, "kind", hdr.Kind, "err", err)
				// The job fails now with the reason, not at the file timeout.
				err = fmt.Errorf("%s not received: %w", hdr.Kind, err)
			}
			c.addFile(hdr, data, err)
		})
	}
}

// readFile reads one file, refusing sizes over the announced limits.
func (c *conn) readFile(hdr wire.FileHeader, r io.Reader) ([]byte, error) {
	limit := int64(defaultMaxSource)
	if l := c.welcome.Limits.MaxSource; l > 0 {
		limit = l
	}
	if hdr.Kind == wire.FileStdin {
		limit = defaultMaxStdin
		if l := c.welcome.Limits.MaxStdin; l > 0 {
			limit = l
		}
	}
	if hdr.Size > limit || hdr.Size < 0 {
		return nil, fmt.Errorf("%s of %d bytes is over the limit of %d", hdr.Kind, hdr.Size, limit)
	}
	data := make([]byte, hdr.Size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	// The reader checks the SHA-256 once it reached the end.
	if _, err := r.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("after %d bytes: %w", hdr.Size, err)
	}
	return data, nil
}

// addFile gives a file (or the error that ended its stream) to its job,
// or keeps it until the Assign comes.
func (c *conn) addFile(hdr wire.FileHeader, data []byte, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j := c.jobs[hdr.JobID]; j != nil {
		j.files.add(hdr, data, err)
		j.checkReady()
		return
	}
	o := c.orphans[hdr.JobID]
	if o == nil {
		if len(c.orphans) >= maxOrphans {
			c.log.Warn("too many files without an Assign; dropping one", "job", hdr.JobID)
			return
		}
		o = &files{at: time.Now()}
		c.orphans[hdr.JobID] = o
	}
	o.add(hdr, data, err)
}

func (c *conn) dropStaleOrphans() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, o := range c.orphans {
		if time.Since(o.at) > c.s.cfg.FileTimeout {
			c.log.Warn("files never assigned; dropped", "job", id)
			delete(c.orphans, id)
		}
	}
}

// checkReady closes ready once the source and any announced stdin are in.
// The caller holds conn.mu.
func (j *job) checkReady() {
	complete := j.files.haveSource && (j.assign.StdinSize == 0 || j.files.haveStdin)
	if !j.isSet && (complete || j.files.err != nil) {
		j.isSet = true
		close(j.ready)
	}
}

// assign registers a job with the keeper and starts its goroutine, owned
// by the Slave: it may outlive this session. Files that came inline in
// the Assign are checked (wire.CheckInline) and given to the job at once.
func (c *conn) assign(runCtx context.Context, a wire.Assign) {
	jctx, cancel := context.WithCancel(runCtx)
	in := a.Inline
	a.Inline = wire.Inline{} // the job and its keeper entry hold the files once, in files
	j := &job{assign: a, ready: make(chan struct{})}
	j.kept = c.s.keep.add(a, cancel)
	c.mu.Lock()
	c.jobs[a.JobID] = j
	if o := c.orphans[a.JobID]; o != nil {
		j.files = *o
		delete(c.orphans, a.JobID)
	}
	j.files.inline(a, in)
	j.checkReady()
	c.mu.Unlock()
	c.log.Debug("job assigned", "job", a.JobID, "attempt", a.Attempt, "lang", a.Language)
	c.s.jobs.Go(func() {
		defer cancel()
		defer c.s.keep.forget(j.kept)
		defer c.forget(j)
		out := &output{k: c.s.keep, j: j.kept, a: a}
		res := c.runJob(jctx, j, out)
		if runCtx.Err() != nil {
			// The slave is stopping, not cancelled by the master: report
			// nothing, so that the master runs the job again elsewhere
			// instead of taking this as its result.
			c.log.Info("job abandoned: slave stopping", "job", a.JobID)
			return
		}
		c.s.keep.cork(j.kept) // the last Output messages leave with the Result
		out.finish(&res)
		res.JobID, res.Attempt, res.Slave = a.JobID, a.Attempt, c.s.id.Name
		c.s.keep.finish(j.kept, &res, time.Now())
	})
}

// cancel stops a job at the master's request; its goroutine answers with
// a cancelled Result. The job may be one kept from an earlier session.
func (c *conn) cancel(id string) {
	c.mu.Lock()
	delete(c.orphans, id)
	c.mu.Unlock()
	if c.s.keep.cancel(id) {
		c.log.Info("job cancelled", "job", id)
	}
}

func (c *conn) forget(j *job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs[j.assign.JobID] == j {
		delete(c.jobs, j.assign.JobID)
	}
}

// runJob waits for the job's files and a free slot, then executes it,
// opening a sealed job's payloads first. Output goes to out.
func (c *conn) runJob(ctx context.Context, j *job, out *output) wire.Result {
	a := j.assign
	res := wire.Result{Language: a.Language}
	t := time.NewTimer(c.s.cfg.FileTimeout)
	defer t.Stop()
	select {
	case <-j.ready:
	case <-t.C:
		return fail(res, wire.StatusInternalError, fmt.Sprintf("job files did not arrive within %v", c.s.cfg.FileTimeout))
	case <-ctx.Done():
		return fail(res, wire.StatusCancelled, "cancelled before it started")
	}
	c.mu.Lock()
	f := j.files
	c.mu.Unlock()
	if f.err != nil {
		return fail(res, wire.StatusInternalError, "job files: "+f.err.Error())
	}
	bundle, contentKey := f.stdin, []byte(nil)
	if a.Sealed {
		key, src, stdin, err := c.s.openInputs(a, f)
		contentKey = key
		if key != nil {
			if serr := out.seal(key); serr != nil {
				return fail(res, wire.StatusInternalError, serr.Error())
			}
		}
		if err != nil {
			c.log.Warn("sealed job refused", "job", a.JobID, "err", err)
			return fail(res, wire.StatusInternalError, err.Error())
		}
		f.source, f.stdin = src, stdin
	} else if f.sealed {
		return fail(res, wire.StatusInternalError, "sealed files for a job not assigned as sealed")
	}
	select {
	case c.s.slots <- struct{}{}:
		defer func() { <-c.s.slots }()
	case <-ctx.Done():
		return fail(res, wire.StatusCancelled, "cancelled before it started")
	}
	if !c.s.keep.start(j.kept) {
		return fail(res, wire.StatusCancelled, "abandoned before it started")
	}
	c.s.running.Add(1)
	defer c.s.running.Add(-1)
	job := Job{ID: a.JobID, Attempt: a.Attempt, Language: a.Language, FileName: a.FileName,
		Source: f.source, Stdin: f.stdin, Limits: a.Limits, Owner: a.Owner, Options: a.Options}
	if a.Tests > 0 {
		return c.runBatch(ctx, job, bundle, contentKey, out)
	}
	return c.s.cfg.Executor.Execute(ctx, job, out.emit)
}
