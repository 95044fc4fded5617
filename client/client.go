// Package client is the Go client of a Kiln master: it dials the master over
// mutual TLS, says Hello with the identity of its bundle, submits programs,
// streams their output and collects their results, and asks for cluster
// information and admin commands.
//
// # Concurrency
//
// A [Client] is safe for concurrent use. One reader goroutine, owned by the
// Client, reads every message the master sends and dispatches it: answers to
// requests by envelope id, job messages ([wire.JobState], [wire.Output],
// [wire.Result]) by job id to the [Job] they belong to. Nothing the reader
// does blocks on a caller. [Client.Close] is idempotent and waits for every
// goroutine the client started.
//
// # Errors
//
// A refusal at Hello is returned by [Dial] as a *transport.RefusedError. A
// request the master could not serve (busy, no_slave, too_large, ...) fails
// with a *[RequestError]. When the session ends while a job runs, the job's
// [Job.Wait] returns a *[LostError] (matching [ErrConnLost]); [Client.Err]
// says why the session ended, e.g. a *transport.RefusedError received
// mid-session because the key was revoked or the client was kicked.
package client

import (
	"context"
	"crypto/ecdh"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// Config configures [Dial].
type Config struct {
	// Bundle holds the client's certificate, key and the cluster CA. Its
	// certificate identity gives the role (client or admin), name and
	// version announced in Hello.
	Bundle *certs.Bundle
	// Master is the master's client address, HOST:PORT. HOST is also the
	// name its certificate must carry.
	Master string
	// Version overrides the software version announced in Hello; empty
	// means the version in the bundle's certificate.
	Version string
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
	// Transport tunes the session; zero fields take transport.DefaultConfig() values.
	Transport transport.Config
	// SealAhead is how many slaves per language a sealed job's key is
	// wrapped for in its Submit: the ones this session's jobs of the
	// language last went to, whose certificates passed the checks of a
	// WrapRequest. A job assigned to one of them skips the WrapRequest
	// round trip; each costs two scalar multiplications (~0.1 ms of CPU)
	// per job. While the master sends the jobs elsewhere (a cluster of
	// more slaves than this), wrapping ahead pauses: 8 first attempts in a
	// row to other slaves pause it for the next 64 jobs of the language.
	// 0 means DefaultSealAhead; negative: none.
	SealAhead int
	// Quiet announces wire.FeatureQuiet: the master then sends the
	// session's jobs no progress JobState (queued, assigned, running,
	// done or failed after the Result), only requeued ones. For a client
	// that shows no progress: four fewer messages per job for the master
	// to encode and send and the client to decode.
	Quiet bool
}

// DefaultSealAhead is the default of Config.SealAhead.
const DefaultSealAhead = 4

// Client is a session with a master. See the package doc for its
// concurrency rules.
type Client struct {
	s       *transport.Session
	ca      *x509.Certificate // the cluster CA, which slave certificates must chain to
	keys    *slaveKeys        // slave sealing keys checked against ca
	ahead   *aheadSlaves      // slaves the next sealed jobs' keys are wrapped for in their Submit
	welcome wire.Welcome
	log     *slog.Logger
	nextID  atomic.Uint64
	// jobSecret is what sealed jobs' keys are derived from (see
	// durable.go); nil: random keys.
	jobSecret []byte
	// outPriv is the key pair sealed jobs' output keys are wrapped for,
	// made at the first sealed job (outputKey).
	outMu   sync.Mutex
	outPriv *ecdh.PrivateKey

	mu      sync.Mutex
	pending map[uint64]*call
	jobs    map[string]*Job
	err     error // why the session ended; set once
	// readDone is set when the reader has returned: from then on no
	// goroutine may join wg (its count may be reaching zero in Wait).
	readDone bool

	closing   chan struct{} // closed by Close or when the reader ends
	closeOnce sync.Once
	done      chan struct{} // closed when every goroutine has returned
	wg        sync.WaitGroup
}

// call is one request waiting for its answer.
type call struct {
	submit    bool        // an Accepted answer creates and registers a Job
	seal      *jobSeal    // the sealing state of that Job, for a sealed Submit
	maxOutput int64       // the output bound of that Job
	attach    *attachCall // an Attached answer creates and registers a Job
	reply     chan reply
}

type reply struct {
	env wire.Envelope
	job *Job
	err error
}

// Dial connects to the master, says Hello and waits for Welcome. On refusal
// it returns the *transport.RefusedError. The returned Client owns a reader
// goroutine until [Client.Close].
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if cfg.Bundle == nil {
		return nil, errors.New("client: no bundle")
	}
	id, err := auth.IdentityOf(cfg.Bundle.Cert)
	if err != nil {
		return nil, fmt.Errorf("client: bundle identity: %w", err)
	}
	if id.Role != wire.RoleClient && id.Role != wire.RoleAdmin {
		return nil, fmt.Errorf("client: bundle is for role %q, not client or admin", id.Role)
	}
	host, _, err := net.SplitHostPort(cfg.Master)
	if err != nil {
		return nil, fmt.Errorf("client: master address %q: %w", cfg.Master, err)
	}
	s, err := transport.Dial(ctx, cfg.Master, auth.ClientConfig(cfg.Bundle, host), cfg.Transport)
	if err != nil {
		return nil, err
	}
	version := cfg.Version
	if version == "" {
		version = id.Version
	}
	features := []string{wire.FeatureTests, wire.FeatureInline, wire.FeatureSubmitWraps}
	if cfg.Quiet {
		features = append(features, wire.FeatureQuiet)
	}
	w, err := transport.Hello(ctx, s, wire.Hello{Proto: wire.ProtocolVersion, Role: id.Role, Name: id.Name, Version: version,
		Features: features})
	if err != nil {
		s.Close()
		return nil, err
	}
	c := newClient(s, w, cfg.Logger)
	c.ca = cfg.Bundle.CA
	c.keys = newSlaveKeys(c.ca)
	c.ahead = newAheadSlaves(cfg.SealAhead)
	c.jobSecret = jobSecret(cfg.Bundle.Key)
	c.start()
	return c, nil
}

func newClient(s *transport.Session, w wire.Welcome, log *slog.Logger) *Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{
		s: s, welcome: w, log: log,
		pending: make(map[uint64]*call),
		jobs:    make(map[string]*Job),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
}

func (c *Client) start() {
	c.wg.Add(1)
	go c.readLoop()
	go func() {
		c.wg.Wait()
		close(c.done)
	}()
}

// Welcome returns the master's Welcome: session id, heartbeat and limits.
func (c *Client) Welcome() wire.Welcome { return c.welcome }

// Done returns a channel closed once the session has ended and every
// goroutine of the client has returned.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the session ended: nil while it is up, [ErrClosed] after
// Close, a *transport.RefusedError when the master refused the client
// mid-session (revoked key, kicked, shutdown), or the network error.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the session and waits for the client's goroutines. Pending
// requests fail with [ErrClosed]; running jobs end with a *[LostError]. It
// is idempotent and always returns nil.
func (c *Client) Close() error {
	c.shutdown(ErrClosed)
	<-c.done
	return nil
}

// shutdown records why the session ends (the first cause wins), closes the
// session, and fails every pending request and job.
func (c *Client) shutdown(cause error) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.err = cause
		pending, jobs := c.pending, c.jobs
		c.pending, c.jobs = map[uint64]*call{}, map[string]*Job{}
		c.mu.Unlock()
		close(c.closing)
		c.s.Close()
		for _, p := range pending {
			p.reply <- reply{err: c.lostErr(cause)}
		}
		for id, j := range jobs {
			j.finish(nil, &LostError{Job: id, Cause: cause}, Event{})
		}
	})
}

// lostErr is the error of a request cut short by the end of the session.
func (c *Client) lostErr(cause error) error {
	if errors.Is(cause, ErrClosed) {
		return ErrClosed
	}
	var re *transport.RefusedError
	if errors.As(cause, &re) {
		return re
	}
	return fmt.Errorf("%w: %w", ErrConnLost, cause)
}

// readLoop reads the control stream until the session ends.
func (c *Client) readLoop() {
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		c.readDone = true
		c.mu.Unlock()
	}()
	for {
		env, err := c.s.Recv()
		if err != nil {
			c.shutdown(err)
			return
		}
		if err := c.dispatch(env); err != nil {
			c.shutdown(err)
			return
		}
	}
}

// dispatch routes one envelope. A non-nil error ends the session.
func (c *Client) dispatch(env wire.Envelope) error {
	switch env.Type {
	case wire.MsgRefused:
		var r wire.Refused
		if err := wire.Decode(env, &r); err != nil {
			return err
		}
		return transport.NewRefusedError(r)
	case wire.MsgJobState, wire.MsgOutput, wire.MsgResult, wire.MsgTestResult:
		return c.dispatchJob(env)
	case wire.MsgAccepted, wire.MsgError, wire.MsgInfo, wire.MsgAdminReply, wire.MsgAttached, wire.MsgJobList:
		return c.dispatchReply(env)
	case wire.MsgWrapRequest:
		return c.wrapRequest(env)
	}
	c.log.Debug("ignoring message", "type", env.Type, "id", env.ID)
	return nil
}

// dispatchReply hands an answer to the request with the same envelope id.
// An Accepted for a Submit registers the Job before anything else is read,
// so that no job message can overtake it.
func (c *Client) dispatchReply(env wire.Envelope) error {
	var job *Job
	var acc wire.Accepted
	if env.Type == wire.MsgAccepted {
		if err := wire.Decode(env, &acc); err != nil {
			return err
		}
	}
	var att wire.Attached
	if env.Type == wire.MsgAttached {
		if err := wire.Decode(env, &att); err != nil {
			return err
		}
	}
	c.mu.Lock()
	p := c.pending[env.ID]
	delete(c.pending, env.ID)
	if p != nil && p.submit && env.Type == wire.MsgAccepted {
		job = newJob(c, acc.JobID, p.maxOutput)
		job.seal = p.seal
		c.jobs[acc.JobID] = job
	}
	var attErr error
	if p != nil && p.attach != nil && env.Type == wire.MsgAttached {
		if job, attErr = c.attachedJob(p.attach, att); job != nil {
			c.jobs[att.JobID] = job
		}
	}
	c.mu.Unlock()
	if attErr != nil {
		p.reply <- reply{env: env, err: attErr}
		return nil
	}
	if p == nil {
		if env.Type == wire.MsgAccepted {
			c.cancelOrphan(acc.JobID) // its Submit was abandoned
		}
		c.log.Debug("answer to no pending request", "type", env.Type, "id", env.ID)
		return nil
	}
	p.reply <- reply{env: env, job: job}
	return nil
}

// track counts one more goroutine in wg, unless the reader has returned;
// it is for goroutines started from outside the reader (Job.Events).
func (c *Client) track() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.readDone {
		return false
	}
	c.wg.Add(1)
	return true
}

// cancelOrphan cancels a job accepted after its submitter gave up.
func (c *Client) cancelOrphan(id string) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.send(ctx, wire.MsgCancel, 0, wire.Cancel{JobID: id})
	}()
}

// firstRanOn tells the wrap-ahead accounting where a sealed job's first
// attempt ran (its assigned state, or its Result on a quiet session).
func (c *Client) firstRanOn(j *Job, slave string) {
	j.mu.Lock()
	js := j.seal
	j.mu.Unlock()
	if js != nil {
		c.ahead.assigned(js, slave)
	}
}

// dispatchJob decodes a job message and hands it to its Job.
func (c *Client) dispatchJob(env wire.Envelope) error {
	var (
		id    string
		apply func(*Job) bool
	)
	switch env.Type {
	case wire.MsgJobState:
		var st wire.JobState
		if err := wire.Decode(env, &st); err != nil {
			return err
		}
		id, apply = st.JobID, func(j *Job) bool {
			if st.State == wire.StateAssigned && st.Attempt == 1 {
				c.firstRanOn(j, st.Slave)
			}
			return j.state(st)
		}
	case wire.MsgOutput:
		var out wire.Output
		if err := wire.Decode(env, &out); err != nil {
			return err
		}
		id, apply = out.JobID, func(j *Job) bool { return j.output(out) }
	case wire.MsgResult:
		var res wire.Result
		if err := wire.Decode(env, &res); err != nil {
			return err
		}
		quiet := wire.HasFeature(c.welcome.Features, wire.FeatureQuiet)
		id, apply = res.JobID, func(j *Job) bool {
			if quiet && res.Attempt == 1 && res.Slave != "" {
				// No assigned state on a quiet session: where the
				// first attempt ran is in its Result.
				c.firstRanOn(j, res.Slave)
			}
			return j.resultMsg(res)
		}
	case wire.MsgTestResult:
		var tr wire.TestResult
		if err := wire.Decode(env, &tr); err != nil {
			return err
		}
		id, apply = tr.JobID, func(j *Job) bool { return j.testResult(tr) }
	}
	c.mu.Lock()
	j := c.jobs[id]
	c.mu.Unlock()
	if j == nil {
		c.log.Debug("message for unknown job", "type", env.Type, "job", id)
		return nil
	}
	if apply(j) {
		c.mu.Lock()
		delete(c.jobs, id)
		c.mu.Unlock()
	}
	return nil
}

// wrapRequest answers the master's request to wrap a sealed job's content
// key for the slave it picked. A request that does not check out is
// refused, and the job ends here with a *SealError.
func (c *Client) wrapRequest(env wire.Envelope) error {
	var req wire.WrapRequest
	if err := wire.Decode(env, &req); err != nil {
		return err
	}
	c.mu.Lock()
	j := c.jobs[req.JobID]
	c.mu.Unlock()
	ans := wire.Wrapped{JobID: req.JobID, Attempt: req.Attempt}
	if j == nil || j.seal == nil {
		ans.Refused = "no sealed job " + req.JobID + " on this client"
	} else if wrapped, err := j.seal.wrapFor(c.keys, j.id, req); err != nil {
		ans.Refused = err.Error()
		c.log.Warn("refused to wrap a job key", "job", j.id, "slave", req.Slave, "err", err)
		j.finish(nil, &SealError{Job: j.id, Op: "wrap", Err: err}, Event{})
		c.mu.Lock()
		delete(c.jobs, j.id)
		c.mu.Unlock()
	} else {
		ans.WrappedKey = wrapped
		c.ahead.learn(j.seal.language, req.Slave, req.SlaveCert)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.send(ctx, wire.MsgWrapped, 0, ans); err != nil {
			c.log.Debug("wrapped key not sent", "job", req.JobID, "err", err)
		}
	}()
	return nil
}

// request sends a request and waits for its answer.
func (c *Client) request(ctx context.Context, t wire.MsgType, body any) (wire.Envelope, error) {
	id, p, err := c.register(&call{})
	if err != nil {
		return wire.Envelope{}, err
	}
	if err := c.send(ctx, t, id, body); err != nil {
		c.unregister(id)
		return wire.Envelope{}, err
	}
	r, err := c.await(ctx, id, p)
	return r.env, err
}

// register reserves a request id and its answer slot.
func (c *Client) register(p *call) (uint64, *call, error) {
	id := c.nextID.Add(1)
	p.reply = make(chan reply, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, nil, c.lostErr(c.err)
	}
	c.pending[id] = p
	return id, p, nil
}

// unregister forgets request id and reports whether it was still pending.
func (c *Client) unregister(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.pending[id]
	delete(c.pending, id)
	return ok
}

// abandon gives up on request id. If its answer is already on its way, it
// takes it and cancels the job nobody will wait for.
func (c *Client) abandon(id uint64, p *call) {
	if c.unregister(id) {
		return
	}
	if r := <-p.reply; r.job != nil {
		c.cancelOrphan(r.job.id)
	}
}

// await waits for the answer to request id. An Error answer becomes a
// *RequestError.
func (c *Client) await(ctx context.Context, id uint64, p *call) (reply, error) {
	select {
	case r := <-p.reply:
		if r.err != nil {
			return r, r.err
		}
		if r.env.Type == wire.MsgError {
			var e wire.Error
			if err := wire.Decode(r.env, &e); err != nil {
				return r, fmt.Errorf("decode error reply: %w", err)
			}
			return r, &RequestError{Code: e.Code, Message: e.Message,
				RetryAfter: time.Duration(e.RetryAfterMs) * time.Millisecond}
		}
		return r, nil
	case <-ctx.Done():
		c.abandon(id, p)
		return reply{}, ctx.Err()
	}
}

// send writes one message on the control stream.
func (c *Client) send(ctx context.Context, t wire.MsgType, id uint64, body any) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.s.Send(t, id, body); err != nil {
		if cause := c.Err(); cause != nil {
			return c.lostErr(cause)
		}
		return fmt.Errorf("%w: %w", ErrConnLost, err)
	}
	return nil
}

// Info asks the master what the cluster can run.
func (c *Client) Info(ctx context.Context) (wire.Info, error) {
	var info wire.Info
	env, err := c.request(ctx, wire.MsgInfoRequest, wire.InfoRequest{})
	if err != nil {
		return info, err
	}
	if env.Type != wire.MsgInfo {
		return info, fmt.Errorf("info: unexpected answer type %d", env.Type)
	}
	return info, wire.Decode(env, &info)
}

// Admin runs one admin command, e.g. []string{"server", "list"}. The master
// answers only admin keys; others get a *RequestError with code forbidden.
func (c *Client) Admin(ctx context.Context, args []string) (wire.AdminReply, error) {
	var rep wire.AdminReply
	env, err := c.request(ctx, wire.MsgAdminRequest, wire.AdminRequest{Args: args})
	if err != nil {
		return rep, err
	}
	if env.Type != wire.MsgAdminReply {
		return rep, fmt.Errorf("admin: unexpected answer type %d", env.Type)
	}
	return rep, wire.Decode(env, &rep)
}

// requestID is the job id of the file streams of the Submit with envelope id.
func requestID(id uint64) string { return strconv.FormatUint(id, 10) }
