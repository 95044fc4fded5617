package slave

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/seal"
	"kiln/transport/wire"
)

// Defaults of [Config].
const (
	DefaultBackoffMin  = 200 * time.Millisecond
	DefaultBackoffMax  = 10 * time.Second
	DefaultFileTimeout = 30 * time.Second
)

// Config configures a [Slave].
type Config struct {
	Bundle       *certs.Bundle // the slave's onboarding bundle (required)
	Master       string        // host:port of the master's slave listener (required)
	Version      string        // software version sent in Hello; default: the bundle's
	Slots        int           // jobs run at once; default runtime.NumCPU()
	LoadInterval time.Duration // between Load reports; default wire.DefaultLoadInterval
	Executor     *Executor     // runs the jobs (required)
	Logger       *slog.Logger  // nil discards
	BackoffMin   time.Duration // first reconnect delay; default 200ms
	BackoffMax   time.Duration // reconnect delay cap; default 10s
	// FileTimeout bounds how long an assigned job waits for its files, and
	// files for their Assign; default 30s.
	FileTimeout time.Duration
	// Transport tunes the session; the zero value is transport.DefaultConfig.
	Transport transport.Config
	// Jitter returns a random float in [0, 1) for backoff jitter; default
	// math/rand/v2.Float64.
	Jitter func() float64
	// MinFree is the free space the work and cache directories' file
	// systems need for the slave to report itself healthy (see
	// Executor.Health); default DefaultMinFree.
	MinFree uint64
	// Grace is how long jobs keep running while the master is away, and
	// finished ones keep their output and result to report again; default
	// DefaultGrace, negative: jobs are abandoned with their session.
	Grace time.Duration
	// MaxHeldBytes bounds the output kept for replay over all jobs;
	// default DefaultMaxHeldBytes.
	MaxHeldBytes int64
	// MaxHeldPerOwner bounds the output kept for replay of the jobs of one
	// client key (Assign.Owner), at most MaxHeldBytes; default
	// DefaultMaxHeldPerOwner. A job past it is not held, as one past
	// MaxHeldBytes: one client's output cannot take another's replay.
	MaxHeldPerOwner int64
}

// Slave is the agent that serves one master. Create it with [New], run it
// with [Slave.Run].
type Slave struct {
	cfg     Config
	id      auth.Identity
	log     *slog.Logger
	sampler *LoadSampler
	// sealPriv and sealPub are the bundle's X25519 sealing key pair, set
	// only when the certificate carries the same public key; without them
	// the slave announces no key and the master sends it no sealed job.
	// sealPriv is parsed once: parsing computes the public key, a scalar
	// multiplication (~50 µs) each sealed job would otherwise pay again.
	sealPriv *ecdh.PrivateKey
	sealPub  []byte

	healthMu  sync.Mutex
	healthAt  time.Time // when the directories were last checked
	healthMsg string    // what that check found

	keep     *keeper       // the jobs, across sessions
	slots    chan struct{} // a token per executing job
	running  atomic.Int64
	jobs     sync.WaitGroup // job goroutines; Run waits for them
	draining atomic.Bool    // set by Drain: the slave reports itself unavailable
	loadNow  chan struct{}  // capacity 1: send a load report at once
}

// Drain makes the slave take no new job: from its next load report on it
// tells the master it is shutting down, and the master places no job on
// it, as for an unhealthy slave. Jobs it was given keep running; [Slave.Busy]
// says how many are left. Safe for concurrent use with Run.
func (s *Slave) Drain() {
	s.draining.Store(true)
	select {
	case s.loadNow <- struct{}{}:
	default:
	}
}

// Draining reports whether Drain was called.
func (s *Slave) Draining() bool { return s.draining.Load() }

// Busy returns how many jobs this slave was given that have not finished
// (waiting for their files or a slot, or running). Safe for concurrent use.
func (s *Slave) Busy() int { return s.keep.running() }

// New checks cfg and fills its defaults. It starts nothing.
func New(cfg Config) (*Slave, error) {
	if cfg.Bundle == nil || cfg.Master == "" || cfg.Executor == nil {
		return nil, errors.New("slave: config needs a Bundle, a Master address and an Executor")
	}
	id, err := auth.IdentityOf(cfg.Bundle.Cert)
	if err != nil {
		return nil, fmt.Errorf("slave: bundle: %w", err)
	}
	if id.Role != certs.RoleSlave {
		return nil, fmt.Errorf("slave: bundle is for role %q, not %q", id.Role, certs.RoleSlave)
	}
	if cfg.Version == "" {
		cfg.Version = id.Version
	}
	if cfg.Slots <= 0 {
		cfg.Slots = runtime.NumCPU()
	}
	if cfg.LoadInterval <= 0 {
		cfg.LoadInterval = wire.DefaultLoadInterval
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.FileTimeout <= 0 {
		cfg.FileTimeout = DefaultFileTimeout
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Float64
	}
	if cfg.MinFree == 0 {
		cfg.MinFree = DefaultMinFree
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.MaxHeldBytes < 0 || cfg.MaxHeldPerOwner < 0 {
		return nil, fmt.Errorf("slave: output kept for replay: %d bytes, %d per client: want positive numbers", cfg.MaxHeldBytes, cfg.MaxHeldPerOwner)
	}
	if cfg.MaxHeldBytes == 0 {
		cfg.MaxHeldBytes = DefaultMaxHeldBytes
	}
	if cfg.MaxHeldPerOwner == 0 {
		cfg.MaxHeldPerOwner = DefaultMaxHeldPerOwner
	}
	cfg.MaxHeldPerOwner = min(cfg.MaxHeldPerOwner, cfg.MaxHeldBytes)
	if (cfg.Transport == transport.Config{}) {
		cfg.Transport = transport.DefaultConfig()
	}
	s := &Slave{cfg: cfg, id: id, log: cfg.Logger, sampler: NewLoadSampler(), loadNow: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("slave", id.Name)
	s.keep = newKeeper(cfg.Grace, cfg.MaxHeldBytes, cfg.MaxHeldPerOwner, s.log)
	s.slots = make(chan struct{}, cfg.Slots)
	if err := s.loadSealKey(); err != nil {
		return nil, err
	}
	return s, nil
}

// loadSealKey takes the bundle's sealing key if its certificate binds it.
func (s *Slave) loadSealKey() error {
	b := s.cfg.Bundle
	if len(b.SealKey) == 0 {
		return nil
	}
	priv, err := seal.ParsePrivateKey(b.SealKey)
	if err != nil {
		return fmt.Errorf("slave: bundle: %w", err)
	}
	pub := priv.PublicKey().Bytes()
	inCert, err := certs.SealKeyOf(b.Cert)
	switch {
	case errors.Is(err, certs.ErrNoSealKey):
		s.log.Warn("the bundle's certificate does not carry its sealing key; this slave takes no sealed jobs (re-issue the bundle)")
		return nil
	case err != nil:
		return fmt.Errorf("slave: bundle: %w", err)
	case !bytes.Equal(inCert, pub):
		return errors.New("slave: bundle: the sealing key does not match the one in the certificate")
	}
	s.sealPriv, s.sealPub = priv, pub
	return nil
}

// Run serves the master until ctx ends (it then returns nil) or the master
// refuses this slave for good: an unknown or revoked key, a retired
// version, a role mismatch, a bad hello, an expired certificate or a kick
// (it then returns the *transport.RefusedError). Lost connections,
// shutdowns, busy, already_connected and replaced refusals are retried
// with capped exponential backoff and jitter, one log line per attempt.
// Jobs that started before a session was lost keep running for
// Config.Grace and are reported on the next session (see
// docs/protocol.md). Run returns only after every goroutine it started
// has ended; its jobs are then cancelled, and report nothing.
func (s *Slave) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var sweeper sync.WaitGroup
	defer sweeper.Wait()
	defer s.jobs.Wait()
	defer cancel()
	sweeper.Go(func() { s.keep.sweepLoop(ctx, time.Now) })
	host := DetectHost(ctx)
	if msg := s.health(); msg != "" {
		s.log.Error("this slave cannot run jobs; it reports itself unhealthy and the master sends it none until fixed", "health", msg)
	}
	delay := s.cfg.BackoffMin
	for attempt := 1; ; attempt++ {
		welcomed, err := s.session(ctx, host)
		if ctx.Err() != nil {
			return nil
		}
		var ref *transport.RefusedError
		if errors.As(err, &ref) && fatalRefusal(ref.Code) {
			s.log.Error("master refused this slave", "code", ref.Code, "err", ref)
			return ref
		}
		if welcomed {
			delay, attempt = s.cfg.BackoffMin, 1
		}
		wait := s.jitter(delay)
		if ref != nil && ref.RetryAfter > wait {
			wait = ref.RetryAfter
		}
		s.log.Warn("no session with the master; reconnecting", "master", s.cfg.Master,
			"attempt", attempt, "in", wait.Round(time.Millisecond), "err", err)
		if !sleep(ctx, wait) {
			return nil
		}
		delay = min(delay*2, s.cfg.BackoffMax)
	}
}

// healthEvery is how often the directories are checked; Load reports in
// between repeat the last verdict.
const healthEvery = 10 * time.Second

// health checks the executor's directories at most every healthEvery and
// logs a change (see Executor.Health); "" means healthy.
func (s *Slave) health() string {
	if s.draining.Load() {
		return "draining: shutting down once its running jobs finish"
	}
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	if !s.healthAt.IsZero() && time.Since(s.healthAt) < healthEvery {
		return s.healthMsg
	}
	msg := s.cfg.Executor.Health(s.cfg.MinFree)
	if len(msg) > wire.MaxText {
		// Load.health is refused past wire.MaxText (a path alone can be 4 KiB).
		msg = strings.ToValidUTF8(msg[:wire.MaxText-3], "") + "..."
	}
	old, first := s.healthMsg, s.healthAt.IsZero()
	s.healthMsg, s.healthAt = msg, time.Now()
	if !first && old != msg {
		if msg != "" {
			s.log.Error("slave unhealthy; the master sends it no job", "health", msg)
		} else {
			s.log.Info("slave healthy again")
		}
	}
	return msg
}

// fatalRefusal reports whether a refusal code means that reconnecting
// cannot help. Every other refusal is temporary, among them
// already_connected (another session of this key is live: a slave
// restarted before the master noticed its old session, or a copy of its
// bundle), replaced, busy and shutdown.
func fatalRefusal(code string) bool {
	switch code {
	case wire.CodeRevokedKey, wire.CodeUnknownKey, wire.CodeVersionRetired,
		wire.CodeRoleMismatch, wire.CodeKicked, wire.CodeBadHello, wire.CodeCertExpired:
		return true
	}
	return false
}

// jitter spreads d over [d/2, d) so that slaves of a restarted master do
// not reconnect in lockstep.
func (s *Slave) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(s.cfg.Jitter()*float64(d/2))
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// session runs one connection to the master until it ends. welcomed
// reports whether the master accepted the Hello.
func (s *Slave) session(ctx context.Context, host HostInfo) (welcomed bool, err error) {
	tlsCfg := auth.ClientConfig(s.cfg.Bundle, s.cfg.Master)
	sess, err := transport.Dial(ctx, s.cfg.Master, tlsCfg, s.cfg.Transport)
	if err != nil {
		return false, err
	}
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	w, err := transport.Hello(hctx, sess, wire.Hello{Role: wire.RoleSlave, Name: s.id.Name, Version: s.cfg.Version,
		Features: []string{wire.FeatureTests, wire.FeatureInline, wire.FeatureSubmitWraps}})
	cancel()
	if err != nil {
		return false, err // Hello closed the session
	}
	s.log.Info("connected to the master", "master", s.cfg.Master, "session", w.SessionID)
	c := newConn(s, sess, w)
	return true, c.serve(ctx, host)
}
