// Package master is the cluster's router: it accepts slaves and clients over
// mutual TLS, checks every peer against the key registry, keeps the table of
// connected peers, queues jobs and places each on the least-loaded slave that
// runs its language, and forwards output and results back to the client.
//
// The master never runs submitted code itself. It routes the program text and
// its output (sealed, when the client seals them) and keeps only metadata.
//
// # Concurrency
//
// A [Server] owns one goroutine per listener, one per connected peer (its
// read loop), one send loop per peer, one file-accepting loop per client, a
// dispatcher and the registry watcher. All of them stop when the context
// given to [Server.Run] is cancelled; Run returns after they have.
// Shared state (peers, jobs, queue) is guarded by one mutex; nothing blocks on
// the network while holding it. Each slave's output routes (job and
// attempt to client, with the bytes counted against the job's cap) have a
// lock of their own, so that Output never takes Server.mu; the lock order
// is Server.mu, then slaveConn.rmu.
//
// # Scheduling
//
// The dispatcher serves the fair queue (one FIFO per client key, round
// robin) and places each job through the slave index (slaveIndex), which
// is kept current under Server.mu as slaves register, report their load,
// take and end jobs, are struck, drained or leave quarantine, so that a
// placement costs O(classes × log slaves) and no work grows with the
// queue once no slot is free. pickFor states the policy as a scan; tests
// check the index against it at every dispatch. A sealed job whose client
// wrapped its key ahead goes, among the slaves that tie for the lowest
// score, to one it wrapped for (pickWrapped): no WrapRequest round trip,
// never a busier slave.
package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/limits"
	"kiln/master/state"
	"kiln/transport"
	"kiln/transport/wire"

	"golang.org/x/time/rate"
)

// Config configures a Server. Bundle and Registry are required.
type Config struct {
	ClientAddr string // listen address for clients and admins; default 127.0.0.1:7400
	SlaveAddr  string // listen address for slaves; default 127.0.0.1:7401
	Name       string // the master's name, sent in Welcome; default "master"
	Version    string // software version

	Bundle    *certs.Bundle  // the master's own certificate, key and CA
	Registry  *auth.Registry // the key registry every peer is checked against
	Transport transport.Config

	Limits            wire.Limits   // caps announced in Welcome; zero fields take defaults
	Budget            Budget        // bounds on what peers can make the master hold; zero fields take defaults
	JobLimits         limits.Policy // a job's default and maximal time, memory and output, per language
	HeartbeatInterval time.Duration // slaves' load interval; a slave silent for 3 of them (+1 s) is dropped
	RegistryPoll      time.Duration // how often the registry file is checked for changes; default 200 ms
	UploadTimeout     time.Duration // Submit to last file byte; default 60 s
	WrapTimeout       time.Duration // WrapRequest to Wrapped for a sealed job; default 10 s
	History           int           // finished jobs kept for listing; default 1000
	MaxHeldBytes      int64         // budget for uploaded files held in memory (pending and queued jobs); default 1 GiB
	StrandedAfter     time.Duration // a queued job no connected slave can run ends after this; default 30 s

	// Store keeps the jobs, drains and the id sequence durable (see
	// durable.go); nil keeps them in memory only. The caller opens and
	// closes it. Retention (default DefaultRetention) and StateMaxBytes
	// (default DefaultStateMaxBytes) bound what it keeps of ended jobs;
	// ReclaimAfter (default DefaultReclaimAfter) is how long a restored
	// job waits for the slave it was on.
	Store         *state.Store
	Retention     time.Duration
	StateMaxBytes int64
	ReclaimAfter  time.Duration

	Logger  *slog.Logger
	Metrics *Metrics // optional
	Now     func() time.Time

	// WrapConn, when set, wraps every accepted connection after its TLS
	// handshake, so it sees the plaintext the master reads and writes (a
	// test hook: for example a recorder proving that sealed payloads never
	// pass through the master in the clear). nil leaves connections as they are.
	WrapConn func(net.Conn) net.Conn
}

// Default limits.
const (
	DefaultMaxSource = 16 << 20
	DefaultMaxStdin  = 16 << 20
	DefaultMaxOutput = 16 << 20
	DefaultMaxQueue  = 1024
	// DefaultMaxHeldBytes bounds what clients can make the master hold in
	// memory: the files of pending uploads and of queued and running jobs.
	DefaultMaxHeldBytes = 1 << 30
)

func (c *Config) setDefaults() {
	if c.ClientAddr == "" {
		c.ClientAddr = "127.0.0.1:7400"
	}
	if c.SlaveAddr == "" {
		c.SlaveAddr = "127.0.0.1:7401"
	}
	if c.Name == "" {
		c.Name = "master"
	}
	if c.Limits.MaxFrame == 0 {
		c.Limits.MaxFrame = wire.MaxFrame
	}
	if c.Limits.MaxSource == 0 {
		c.Limits.MaxSource = DefaultMaxSource
	}
	if c.Limits.MaxStdin == 0 {
		c.Limits.MaxStdin = DefaultMaxStdin
	}
	if c.Limits.MaxOutput == 0 {
		// The output relayed is what the job limits allow, at least the default.
		c.Limits.MaxOutput = DefaultMaxOutput
		for _, lang := range wire.Languages() {
			c.Limits.MaxOutput = max(c.Limits.MaxOutput, c.JobLimits.For(lang).Max.OutputBytes)
		}
	}
	if c.Limits.MaxQueue == 0 {
		c.Limits.MaxQueue = DefaultMaxQueue
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = wire.DefaultLoadInterval
	}
	if c.RegistryPoll == 0 {
		c.RegistryPoll = 200 * time.Millisecond
	}
	c.Budget = c.Budget.withDefaults()
	if c.UploadTimeout == 0 {
		c.UploadTimeout = 60 * time.Second
	}
	if c.WrapTimeout == 0 {
		c.WrapTimeout = 10 * time.Second
	}
	if c.History == 0 {
		c.History = 1000
	}
	if c.StrandedAfter == 0 {
		c.StrandedAfter = 30 * time.Second
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.StateMaxBytes == 0 {
		c.StateMaxBytes = DefaultStateMaxBytes
	}
	if c.ReclaimAfter == 0 {
		c.ReclaimAfter = DefaultReclaimAfter
	}
	if c.MaxHeldBytes == 0 {
		c.MaxHeldBytes = DefaultMaxHeldBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Server is a Kiln master. Create it with New, then call Run.
type Server struct {
	cfg    Config
	log    *slog.Logger
	tlsCfg *tls.Config

	lnClient net.Listener
	lnSlave  net.Listener
	kick     chan struct{}
	// dispatches counts the dispatcher's runs (for tests).
	dispatches atomic.Int64
	wg         sync.WaitGroup

	mu      sync.Mutex
	slaves  map[*slaveConn]struct{}
	clients map[*clientConn]struct{}
	jobs    map[string]*job // queued, assigned and running jobs
	queue   *fairQueue
	history []*job // finished jobs, oldest first, at most cfg.History
	nextJob uint64
	closing bool // set at shutdown: sessions that finish their handshake now are refused
	// slaveRecs are what the master remembers of slaves by name across
	// sessions: drained by an admin, strikes, quarantine.
	slaveRecs map[string]*slaveRecord
	// index is the registered slaves as the scheduler sees them.
	index *slaveIndex
	// checkIndex makes every dispatch check the index against the slaves
	// (tests only: see VerifyScheduler).
	checkIndex bool
	// active counts the queued, assigned and running jobs of each client
	// key (by fingerprint), against Budget.Jobs.JobsPerClient, and the
	// jobs whose Submit is being written (see enqueue).
	active map[string]int
	// writing counts the Submits being written to the durable state,
	// against Limits.MaxQueue with the queue (see enqueue).
	writing int
	// held is the bytes of uploaded files in memory (see MaxHeldBytes);
	// heldBy the same by client key (see JobBudget.HeldBytesPerClient).
	held   int64
	heldBy map[string]int64
	// outHeld: output kept for durable records, by client key (see
	// JobBudget.DurableOutputPerClient); its own lock, under slaves' rmu.
	outHeld keyBytes
	// slaveKeys is the session of each connected slave name, keySessions
	// the session count of each client and admin key (see claim).
	slaveKeys   map[string]*peer
	keySessions map[string]*keySessions

	handshakes chan struct{} // a token per handshake in progress (Budget.MaxHandshakes)
	queued     *queueBytes   // bytes queued for all peers (Budget.MaxQueuedBytes)
	logLimits  logLimits
}

// New checks cfg and returns a Server. It starts nothing.
func New(cfg Config) (*Server, error) {
	if cfg.Bundle == nil {
		return nil, errors.New("master: no certificate bundle")
	}
	if cfg.Registry == nil {
		return nil, errors.New("master: no key registry")
	}
	cfg.setDefaults()
	if err := cfg.checkJobLimits(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		tlsCfg:  auth.ServerConfig(cfg.Bundle),
		kick:    make(chan struct{}, 1),
		slaves:  map[*slaveConn]struct{}{},
		index:   newSlaveIndex(),
		clients: map[*clientConn]struct{}{},
		jobs:    map[string]*job{},
		queue:   newFairQueue(),

		slaveRecs:   map[string]*slaveRecord{},
		active:      map[string]int{},
		heldBy:      map[string]int64{},
		slaveKeys:   map[string]*peer{},
		keySessions: map[string]*keySessions{},
		handshakes:  make(chan struct{}, cfg.Budget.MaxHandshakes),
		queued:      &queueBytes{limit: cfg.Budget.MaxQueuedBytes},
		logLimits:   logLimits{per: rate.Limit(cfg.Budget.LogPerPeer), burst: cfg.Budget.LogBurst},
	}
	cfg.Metrics.WatchSlaves(s.SlavesOut)
	cfg.Metrics.WatchHeld(s.HeldBytes)
	cfg.Metrics.WatchCluster(s.Slaves)
	return s, nil
}

// Listen opens both listeners. Run calls it when it has not been called;
// call it first to learn the addresses (useful with port 0).
func (s *Server) Listen() error {
	if s.lnClient != nil {
		return nil
	}
	lc, err := net.Listen("tcp", s.cfg.ClientAddr)
	if err != nil {
		return fmt.Errorf("master: client listener: %w", err)
	}
	ls, err := net.Listen("tcp", s.cfg.SlaveAddr)
	if err != nil {
		lc.Close()
		return fmt.Errorf("master: slave listener: %w", err)
	}
	s.lnClient, s.lnSlave = lc, ls
	return nil
}

// ClientAddr is the address clients dial, once Listen has run.
func (s *Server) ClientAddr() string { return s.lnClient.Addr().String() }

// SlaveAddr is the address slaves dial, once Listen has run.
func (s *Server) SlaveAddr() string { return s.lnSlave.Addr().String() }

// Run serves until ctx is cancelled, then tells every peer the master is
// shutting down, closes every session and returns once every goroutine it
// started has ended.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.log.Info("master listening", "clients", s.ClientAddr(), "slaves", s.SlaveAddr())
	s.goRun(func() { s.acceptLoop(ctx, s.lnClient, portClient) })
	s.goRun(func() { s.acceptLoop(ctx, s.lnSlave, portSlave) })
	s.restore()
	s.goRun(func() { s.dispatchLoop(ctx) })
	s.goRun(func() { s.expireLoop(ctx) })
	s.goRun(func() { s.cfg.Registry.Watch(ctx, s.cfg.RegistryPoll, s.recheckPeers) })
	<-ctx.Done()
	s.shutdown()
	s.wg.Wait()
	return nil
}

func (s *Server) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// shutdown closes the listeners and every session, telling peers why.
func (s *Server) shutdown() {
	s.lnClient.Close()
	s.lnSlave.Close()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	refuseAll(s.peers(), func(*peer) (string, string, bool) {
		return wire.CodeShutdown, "master is shutting down", true
	})
	s.log.Info("master stopped")
}

// refuseAll refuses each peer for which decide says so. It does not wait:
// each refusal is written in the background and bounded by
// Budget.RefuseTimeout, so a peer that stopped reading delays no other.
func refuseAll(peers []*peer, decide func(*peer) (code, reason string, ok bool)) {
	for _, p := range peers {
		if code, reason, ok := decide(p); ok {
			p.refuse(code, reason)
		}
	}
}

// peers lists every connected slave and client.
func (s *Server) peers() []*peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*peer, 0, len(s.slaves)+len(s.clients))
	for sc := range s.slaves {
		out = append(out, sc.peer)
	}
	for cc := range s.clients {
		out = append(out, cc.peer)
	}
	return out
}

// port tells the two listeners apart.
type port string

const (
	portClient port = "client"
	portSlave  port = "slave"
)

func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, p port) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("accept failed", "port", p, "err", err)
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return
		}
		select {
		case s.handshakes <- struct{}{}:
		default:
			// Too many handshakes in progress: close before TLS, so that
			// unauthenticated connections cost a file descriptor briefly
			// and nothing more.
			s.peerLog(conn.RemoteAddr().String()).Warn("too many handshakes in progress; connection closed",
				"port", p, "addr", conn.RemoteAddr().String(), "max", cap(s.handshakes))
			s.cfg.Metrics.refused("handshakes")
			conn.Close()
			continue
		}
		s.goRun(func() { s.handleConn(ctx, conn, p) })
	}
}

// checkJobLimits refuses a job limits policy that cannot work, or whose
// output maximum for some language is over the output the master relays.
func (c *Config) checkJobLimits() error {
	if err := c.JobLimits.Check(); err != nil {
		return fmt.Errorf("master: job limits: %w", err)
	}
	for _, lang := range wire.Languages() {
		if m := c.JobLimits.For(lang).Max.OutputBytes; m > c.Limits.MaxOutput {
			return fmt.Errorf("master: job limits: the maximum output for %s (%s) is over the master's output cap (%s)",
				lang, limits.FormatSize(m), limits.FormatSize(c.Limits.MaxOutput))
		}
	}
	return nil
}
