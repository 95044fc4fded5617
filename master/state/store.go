package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Config configures a [Store]. Zero fields take the documented defaults.
type Config struct {
	// Dir is the data directory. Required unless InMemory.
	Dir string
	// Cluster identifies the cluster the directory belongs to (the CA
	// fingerprint); recorded at first start, compared at every other.
	Cluster string
	// NodeID is this master's raft server id; default "master".
	NodeID string
	// MinFree is the space the data directory's file system must have
	// available at start (and for [Store.CheckSpace]); default 64 MiB.
	MinFree uint64
	// Reserve is the size of the reserve file written in the data
	// directory at start (Open refuses to start without it) and deleted
	// when the disk fills, so that the results of running jobs can still
	// be written; default DefaultReserve.
	Reserve uint64
	// InMemory keeps the log, stable store and snapshots in memory: no
	// data directory, nothing survives Close (tests and benchmarks).
	InMemory bool
	// SnapshotThreshold is the least number of log entries after which
	// raft takes a snapshot; default 4096. The store raises it to the
	// number of job records the state holds (see tuneSnapshots), so that
	// the cost of snapshots per entry does not grow with the state.
	// TrailingLogs is how many entries raft keeps after one; default 1024.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotInterval is how often raft checks the threshold; default 30 s.
	SnapshotInterval time.Duration
	// ElectionTimeout bounds how long a start waits before the node
	// elects itself; default 200 ms (one node: nobody else to hear from).
	ElectionTimeout time.Duration
	// StartTimeout bounds Open's wait for leadership and for the log to
	// be applied; default 30 s.
	StartTimeout time.Duration
	// LazyDelay bounds how long a command proposed with ProposeLazy waits
	// for another command to share its log entry; default 20 ms.
	LazyDelay time.Duration
	// NoSync skips fsync on the log (benchmarks only: a crash loses
	// acknowledged commands).
	NoSync bool
	// BeforeWrite, when set, is called before each log write, on raft's
	// goroutine (tests only: blocking in it holds the writes, as a slow
	// disk would).
	BeforeWrite func()
	Logger      *slog.Logger
}

// Defaults.
const (
	DefaultMinFree           = 64 << 20
	DefaultSnapshotThreshold = 4096
	DefaultTrailingLogs      = 1024
	DefaultSnapshotInterval  = 30 * time.Second
	DefaultElectionTimeout   = 200 * time.Millisecond
	DefaultStartTimeout      = 30 * time.Second
	DefaultLazyDelay         = 20 * time.Millisecond
)

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = "master"
	}
	if c.MinFree == 0 {
		c.MinFree = DefaultMinFree
	}
	if c.Reserve == 0 {
		c.Reserve = DefaultReserve
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.LazyDelay == 0 {
		c.LazyDelay = DefaultLazyDelay
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
}

// ErrNotLeader: this node cannot apply commands (not the leader, or
// shutting down).
var ErrNotLeader = errors.New("not the raft leader")

// Store is the durable state of one master: a [Machine] replicated by a
// raft node whose log lives in the data directory. Open starts it, Close
// stops it; safe for concurrent use.
type Store struct {
	cfg   Config
	m     *Machine
	raft  *raft.Raft
	trans *raft.InmemTransport
	bolt  *raftboltdb.BoltStore
	dir   *dataDir
	res   *reserve
	once  sync.Once
	err   error

	// The proposer: pending commands in order, handed to raft by one
	// goroutine (started by Open, stopped by Close).
	pmu          sync.Mutex
	pending      []*Future
	eager        int // commands in pending proposed with Propose
	stopped      bool
	wakeProposer chan struct{}
	proposerDone chan struct{}
	stored       chan struct{}  // a log write ended (signalLogs)
	answers      chan *inflight // entries handed to raft, to answer in order
	answererDone chan struct{}

	entries, commands atomic.Uint64 // WriteStats
	threshold         atomic.Uint64 // raft's snapshot threshold (tuneSnapshots)
}

// Open checks and locks the data directory, restores the state from the
// latest snapshot and the log after it, and returns once this node leads
// its (one-node) raft group and has applied every entry of the log. A
// directory it refuses is left exactly as it was.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.setDefaults()
	s := &Store{cfg: cfg, m: NewMachine()}
	logs, stable, snaps, err := s.openStorage()
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx, logs, stable, snaps); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// openStorage opens (and checks) the log, stable and snapshot stores.
func (s *Store) openStorage() (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	if s.cfg.InMemory {
		st := raft.NewInmemStore()
		return st, st, raft.NewInmemSnapshotStore(), nil
	}
	if s.cfg.Dir == "" || s.cfg.Cluster == "" {
		return nil, nil, nil, errors.New("state: Config.Dir and Config.Cluster are required")
	}
	d, err := openDir(s.cfg.Dir, s.cfg.Cluster, s.cfg.MinFree)
	if err != nil {
		return nil, nil, nil, err
	}
	s.dir = d
	fail := func(err error) (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
		s.closeStorage()
		return nil, nil, nil, err
	}
	if _, err := os.Stat(d.file(raftDBFile)); errors.Is(err, os.ErrNotExist) && d.hasState() {
		return fail(fmt.Errorf("%w: %s has snapshots but no %s: the log after the last snapshot is lost", ErrCorrupt, d.path, raftDBFile))
	}
	if err := checkBolt(d.file(raftDBFile)); err != nil {
		return fail(err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(d.path, 2, s.hclog()) // in d.path/snapshots
	if err != nil {
		return fail(fmt.Errorf("%w: %s: %v", ErrCorrupt, d.file(snapDir), err))
	}
	if err := checkSnapshot(snaps, d.file(snapDir)); err != nil {
		return fail(err)
	}
	// Read the log from a read-only handle first: opening for writing
	// commits a transaction, and a refused directory must stay as it was.
	if _, err := os.Stat(d.file(raftDBFile)); err == nil {
		ro, err := s.openBolt(true)
		if err != nil {
			return fail(err)
		}
		err = verifyLog(ro, snaps, d.file(raftDBFile))
		ro.Close()
		if err != nil {
			return fail(err)
		}
	}
	s.res = &reserve{path: d.file(reserveFile), size: int64(s.cfg.Reserve)}
	if err := s.res.create(); err != nil {
		return fail(fmt.Errorf("%w: %s: cannot write the disk reserve of %d bytes: %v (free some space)",
			ErrDiskFull, s.res.path, s.cfg.Reserve, err))
	}
	if s.bolt, err = s.openBolt(false); err != nil {
		return fail(err)
	}
	logs := &reserveLogs{LogStore: s.bolt, StableStore: s.bolt, r: s.res}
	return logs, logs, snaps, nil
}

func (s *Store) openBolt(readOnly bool) (b *raftboltdb.BoltStore, err error) {
	path := s.dir.file(raftDBFile)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, p)
		}
	}()
	b, err = raftboltdb.New(raftboltdb.Options{Path: path, NoSync: s.cfg.NoSync,
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, ReadOnly: readOnly}})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return b, nil
}

// checkSnapshot opens the newest snapshot (raft's file store checks its
// CRC as it opens it) and decodes it into a scratch machine. Raft itself
// would fall back to an older snapshot when the newest does not load,
// and with the log trimmed past it, start from a state with a hole.
func checkSnapshot(snaps raft.SnapshotStore, path string) error {
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
		}
		return nil
	}
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("%w: %s: snapshot %s: %v", ErrCorrupt, path, metas[0].ID, err)
	}
	defer rc.Close()
	if err := NewMachine().Restore(rc); err != nil {
		return fmt.Errorf("%w: %s: snapshot %s: %v", ErrCorrupt, path, metas[0].ID, err)
	}
	return nil
}

// verifyLog reads every log entry and decodes every command, so that a
// damaged entry is refused here with its index rather than found (and
// panicked on) by raft while it replays the log. It also refuses a log
// that starts after index 1 with no snapshot covering the entries before.
func verifyLog(logs raft.LogStore, snaps raft.SnapshotStore, path string) error {
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("%w: snapshots: %v", ErrCorrupt, err)
	}
	if first > 1 && (len(metas) == 0 || metas[0].Index+1 < first) {
		return fmt.Errorf("%w: %s: the log starts at entry %d but no snapshot covers the entries before it (snapshots deleted?)", ErrCorrupt, path, first)
	}
	if len(metas) > 0 && last > 0 && metas[0].Index > last && first > 0 {
		// A snapshot newer than the log is fine: raft starts from it.
		return nil
	}
	var l raft.Log
	for i := first; i <= last && last > 0; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("%w: %s: log entry %d of %d..%d: %v", ErrCorrupt, path, i, first, last, err)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		if _, err := DecodeEntry(l.Data); err != nil {
			return fmt.Errorf("%w: %s: log entry %d: %v", ErrCorrupt, path, i, err)
		}
	}
	return nil
}

// start creates the raft node, bootstraps a new group of one, and waits
// until this node leads and has applied the whole log.
func (s *Store) start(ctx context.Context, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) error {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	rc.HeartbeatTimeout = s.cfg.ElectionTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.ElectionTimeout / 2
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.TrailingLogs = s.cfg.TrailingLogs
	rc.Logger = s.hclog()
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(s.cfg.NodeID))
	s.trans = trans
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, s.cfg.Dir, err)
	}
	if !has {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, trans, cfg); err != nil {
			return fmt.Errorf("state: bootstrap: %w", err)
		}
	}
	s.stored = make(chan struct{}, 1)
	r, err := raft.NewRaft(rc, &fsm{m: s.m}, &signalLogs{LogStore: logs, stored: s.stored, before: s.cfg.BeforeWrite}, stable, snaps, trans)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, s.cfg.Dir, err)
	}
	s.raft = r
	s.threshold.Store(rc.SnapshotThreshold)
	s.wakeProposer, s.proposerDone = make(chan struct{}, 1), make(chan struct{})
	s.answers, s.answererDone = make(chan *inflight, 16), make(chan struct{})
	go s.proposer()
	go s.answerer()
	return s.waitLeader(ctx)
}

// waitLeader waits until this node leads and has applied the log.
func (s *Store) waitLeader(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.raft.State() != raft.Leader {
		select {
		case <-ctx.Done():
			return fmt.Errorf("state: %s: no raft leadership after %v (state %v): %w", s.cfg.Dir, s.cfg.StartTimeout, s.raft.State(), ctx.Err())
		case <-tick.C:
		}
	}
	left := time.Until(deadline(ctx))
	if err := s.raft.Barrier(left).Error(); err != nil {
		return fmt.Errorf("state: applying the log: %w", err)
	}
	if !s.m.Clean() && s.m.queued() {
		// The last run did not close the store: see KindRestart.
		if _, err := s.Apply(ctx, &Command{Kind: KindRestart, Now: time.Now()}); err != nil {
			return fmt.Errorf("state: moving the queued jobs of a crashed run to their next attempt: %w", err)
		}
	}
	s.tuneSnapshots()
	return nil
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// Machine returns the state machine, for reads.
func (s *Store) Machine() *Machine { return s.m }

// Apply proposes c, waits until it is committed and applied, and returns
// Apply's answer.
func (s *Store) Apply(ctx context.Context, c *Command) (*Job, error) {
	return s.Propose(c).Wait()
}

// Propose hands c to the store's proposer and returns at once. Commands
// are handed to raft in the order they were proposed, so a caller may
// propose under its own lock and wait outside it.
func (s *Store) Propose(c *Command) *Future { return s.propose(c, false) }

// ProposeLazy is Propose for a command nobody waits for: it causes no
// log write of its own but goes into the next entry written for a
// command proposed with Propose, or Config.LazyDelay after it was
// proposed when none comes, or at Close, whichever is first; still in
// proposal order. A crash may lose it (with whatever was proposed after
// it and not yet written): the caller must cope with that (the master
// does so for Assign through KindRestart).
func (s *Store) ProposeLazy(c *Command) *Future { return s.propose(c, true) }

func (s *Store) propose(c *Command, lazy bool) *Future {
	f := &Future{kind: c.Kind, lazy: lazy, done: make(chan struct{})}
	b, err := c.Encode()
	if err != nil {
		f.finish(nil, fmt.Errorf("state: encode %s: %w", c.Kind, err))
		return f
	}
	f.data = b
	if lazy {
		f.at = time.Now()
	}
	s.pmu.Lock()
	if s.stopped {
		s.pmu.Unlock()
		f.finish(nil, fmt.Errorf("%w: the store is closed", ErrNotLeader))
		return f
	}
	s.pending = append(s.pending, f)
	if !lazy {
		s.eager++
	}
	s.pmu.Unlock()
	select {
	case s.wakeProposer <- struct{}{}:
	default:
	}
	return f
}

// maxEntryBytes bounds the commands packed into one log entry (one
// command larger than this gets an entry of its own).
const maxEntryBytes = 4 << 20

// proposer writes the pending commands, one log entry at a time (group
// commit: one entry, one bbolt commit, for every command proposed while the
// previous entry was being written). It cuts the next entry only once the
// log write of the previous one has ended: an entry handed to raft while
// another is being written would wait behind it anyway, and would carry
// only the commands proposed before it was cut instead of all of those
// proposed during the write. It does not wait for the previous entry to
// be applied (the answerer does): the next write overlaps it. Lazy
// commands alone wait for Config.LazyDelay. At Close it writes what is
// pending, waits until it is applied, then stops.
func (s *Store) proposer() {
	defer close(s.proposerDone)
	defer close(s.answers)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var last *inflight
	for {
		s.pmu.Lock()
		batch, wait, stopped := s.nextBatchLocked()
		s.pmu.Unlock()
		switch {
		case len(batch) > 0:
			last = s.writeBatch(batch)
		case stopped:
			if last != nil {
				<-last.done
			}
			return
		case wait > 0:
			timer.Reset(wait)
			select {
			case <-s.wakeProposer:
			case <-timer.C:
			}
			timer.Stop()
		default:
			<-s.wakeProposer
		}
	}
}

// nextBatchLocked returns the commands to write now, or how long to wait
// for the oldest lazy one when only lazy commands are pending. pmu is held.
func (s *Store) nextBatchLocked() (batch []*Future, wait time.Duration, stopped bool) {
	if len(s.pending) == 0 {
		return nil, 0, s.stopped
	}
	if s.eager == 0 && !s.stopped {
		if wait := time.Until(s.pending[0].at.Add(s.cfg.LazyDelay)); wait > 0 {
			return nil, wait, false
		}
	}
	batch, s.pending = cut(s.pending)
	for _, f := range batch {
		if !f.lazy {
			s.eager--
		}
	}
	return batch, 0, s.stopped
}

// cut takes the first commands of pending that fit in one entry.
func cut(pending []*Future) (batch, rest []*Future) {
	n, size := 0, 0
	for n < len(pending) && (n == 0 || size+len(pending[n].data) <= maxEntryBytes) {
		size += len(pending[n].data)
		n++
	}
	return pending[:n:n], pending[n:]
}

// inflight is an entry handed to raft, with its commands.
type inflight struct {
	af    raft.ApplyFuture
	batch []*Future
	done  chan struct{} // closed once its commands are answered
}

// writeBatch hands one entry to raft and returns once its log write has
// ended (or the entry failed); the answerer answers its commands.
func (s *Store) writeBatch(batch []*Future) *inflight {
	cmds := make([][]byte, len(batch))
	for i, f := range batch {
		cmds[i] = f.data
	}
	b := encodeEntry(cmds)
	select { // a signal of an earlier write (raft's own entries) is stale
	case <-s.stored:
	default:
	}
	e := &inflight{af: s.raft.Apply(b, 0), batch: batch, done: make(chan struct{})}
	s.answers <- e
	select {
	case <-s.stored:
	case <-e.done:
	}
	return e
}

// answerer waits for the entries handed to raft, in order, and answers
// their commands (and runs their OnDone functions).
func (s *Store) answerer() {
	defer close(s.answererDone)
	for e := range s.answers {
		rs, err := entryResult(e.af)
		if err == nil {
			if s.entries.Add(1)%tuneEvery == 0 {
				s.tuneSnapshots()
			}
			s.commands.Add(uint64(len(e.batch)))
		}
		for i, f := range e.batch {
			switch {
			case err != nil:
				f.finish(nil, fmt.Errorf("state: %s: %w", f.kind, err))
			case i < len(rs):
				f.finish(rs[i].Job, rs[i].Err)
			default:
				f.finish(nil, fmt.Errorf("state: %s: no answer in its entry", f.kind))
			}
		}
		close(e.done)
	}
}

// signalLogs wraps the raft log store: the end of each StoreLogs (raft's
// leader writing entries) is signalled to the proposer.
type signalLogs struct {
	raft.LogStore
	stored chan struct{}
	before func() // Config.BeforeWrite
}

func (l *signalLogs) StoreLogs(logs []*raft.Log) error {
	if l.before != nil {
		l.before()
	}
	err := l.LogStore.StoreLogs(logs)
	select {
	case l.stored <- struct{}{}:
	default:
	}
	return err
}

// tuneEvery is how many entries the proposer writes between two looks
// at the snapshot threshold.
const tuneEvery = 64

// tuneSnapshots sets raft's snapshot threshold to the number of job
// records the state holds, and at least Config.SnapshotThreshold. A
// snapshot encodes every record (about 16 µs each on the 2-core test
// machine: 16 s of CPU for a million): with a fixed threshold its cost
// per entry grows with the state kept (24 h of results), with this one
// each entry pays for at most one record's encoding, about two per job.
// The log between two snapshots, replayed at a restart, holds then up to
// as many entries as there are records (about half the state's bytes: a
// job's payload and output are in its Submit and Result entries). Changes
// smaller than a quarter are not made. Called at Open and by the answerer.
func (s *Store) tuneSnapshots() {
	want := max(s.cfg.SnapshotThreshold, uint64(s.m.Stats().Jobs))
	cur := s.threshold.Load()
	if want*4 > cur*5 || want*4 < cur*3 {
		rc := s.raft.ReloadableConfig()
		rc.SnapshotThreshold = want
		if err := s.raft.ReloadConfig(rc); err == nil {
			s.threshold.Store(want)
		}
	}
}

// SnapshotThreshold returns the snapshot threshold raft uses now.
func (s *Store) SnapshotThreshold() uint64 { return s.raft.ReloadableConfig().SnapshotThreshold }

// WriteStats counts what the store wrote since Open.
type WriteStats struct {
	Entries  uint64 // log entries written (one bbolt commit, two fdatasyncs, each with a data directory)
	Commands uint64 // commands in them
}

// WriteStats returns what the store wrote since Open.
func (s *Store) WriteStats() WriteStats {
	return WriteStats{Entries: s.entries.Load(), Commands: s.commands.Load()}
}

// entryResult waits for an entry and returns its commands' answers.
func entryResult(af raft.ApplyFuture) ([]Response, error) {
	if err := af.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			return nil, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return nil, err
	}
	switch r := af.Response().(type) {
	case []Response:
		return r, nil
	case error:
		return nil, r
	}
	return nil, errors.New("unexpected answer")
}

// Future is a proposed command.
type Future struct {
	kind Kind
	data []byte
	lazy bool      // proposed with ProposeLazy
	at   time.Time // when, for a lazy one
	done chan struct{}

	mu       sync.Mutex
	finished bool
	then     func(*Job, error)
	job      *Job
	err      error
}

func (f *Future) finish(j *Job, err error) {
	f.mu.Lock()
	f.job, f.err, f.finished = j, err, true
	then := f.then
	f.mu.Unlock()
	close(f.done)
	if then != nil {
		then(j, err)
	}
}

// OnDone makes fn run with the command's answer once it is applied or
// failed, on the store's answering goroutine (or at once, on the caller's,
// when it already is): for a caller that does not wait, without a
// goroutine of its own. The functions of one entry's commands, then of
// the next entry's, run one after the other in the order the commands
// were proposed. fn must not wait for a command's answer (it would wait
// for itself) and must be quick: the answers after it wait for it. It
// may propose (Propose never waits) and take a lock of the caller's that
// is never held while waiting for a command.
func (f *Future) OnDone(fn func(*Job, error)) {
	f.mu.Lock()
	if !f.finished {
		f.then = fn
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	fn(f.job, f.err)
}

// Wait waits until the command is committed and applied (or failed) and
// returns Apply's answer. ErrNotLeader means it may not have been applied.
func (f *Future) Wait() (*Job, error) {
	<-f.done
	return f.job, f.err
}

// Snapshot asks raft for a snapshot now (and to trim the log behind it).
func (s *Store) Snapshot() error { return s.raft.Snapshot().Error() }

// CheckSpace returns ErrDiskFull when the data directory's file system
// has less than Config.MinFree available: the master refuses new jobs
// then, and keeps finishing the accepted ones, whose writes use the
// space of the reserve file (released then, or at a write that fails
// with ENOSPC). It keeps returning ErrDiskFull until MinFree plus the
// reserve are available and the reserve is written again.
func (s *Store) CheckSpace() error {
	if s.cfg.InMemory {
		return nil
	}
	return s.res.check(s.cfg.Dir, s.cfg.MinFree)
}

// ReserveReleased reports whether the reserve file is deleted (the disk
// filled and it has not been written back yet).
func (s *Store) ReserveReleased() bool {
	if s.res == nil {
		return false
	}
	s.res.mu.Lock()
	defer s.res.mu.Unlock()
	return s.res.released
}

// Close stops the raft node and releases the data directory. Idempotent.
func (s *Store) Close() error {
	s.once.Do(func() {
		if s.proposerDone != nil {
			// Everything proposed is written, then the mark that the
			// store was closed cleanly (see KindStop).
			stop := &Future{kind: KindStop, done: make(chan struct{})}
			stop.data, _ = (&Command{Kind: KindStop, Now: time.Now()}).Encode()
			s.pmu.Lock()
			s.pending = append(s.pending, stop)
			s.eager++
			s.stopped = true
			s.pmu.Unlock()
			select {
			case s.wakeProposer <- struct{}{}:
			default:
			}
			<-s.proposerDone
		}
		if s.raft != nil {
			s.err = s.raft.Shutdown().Error()
		}
		if s.answererDone != nil {
			<-s.answererDone
		}
		if s.trans != nil {
			s.trans.Close()
		}
		s.closeStorage()
	})
	return s.err
}

func (s *Store) closeStorage() {
	if s.bolt != nil {
		if err := s.bolt.Close(); err != nil && s.err == nil {
			s.err = err
		}
		s.bolt = nil
	}
	if s.dir != nil {
		s.dir.close()
		s.dir = nil
	}
}

// hclog adapts the configured slog logger for raft: warnings and errors
// only.
func (s *Store) hclog() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: slogWriter{s.cfg.Logger}})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && p[len(p)-1] == '\n' {
		p = p[:len(p)-1]
	}
	return p
}
