package master

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"kiln/certs"
	"kiln/master/state"
	"kiln/transport/seal"
	"kiln/transport/wire"
)

// slaveConn is a connected slave. Fields below peer, but for rmu and
// routes, are guarded by Server.mu.
type slaveConn struct {
	*peer
	registered   bool
	reg          wire.Register
	langs        map[string]bool // the languages of reg, built once at Register
	load         wire.Load
	loadAt       time.Time
	loadWake     time.Time // when a Load last woke the dispatcher
	running      map[string]*job
	lastAssigned time.Time
	finished     int   // jobs finished on this slave
	slot         *slot // its place in Server.index once registered; nil after it left
	// sealKey is the slave's X25519 sealing key, announced in Register and
	// equal to the one its certificate carries; nil when it has none, and
	// then no sealed job is placed on it.
	sealKey []byte

	// routes maps each job running here to what its Output needs, so
	// that output is counted and forwarded without Server.mu. Lock order:
	// Server.mu, then rmu.
	rmu    sync.Mutex
	routes map[string]*route
}

// route is one attempt's output path: where its Output goes and how much
// of it the master has forwarded against the job's cap.
type route struct {
	attempt int
	client  *clientConn // nil once the client left
	limit   int64       // output bytes the job may produce
	maxMsgs int
	sealed  bool
	bytes   int64
	msgs    int
	keyed   [2]bool // a sealed stream's first message (header and wrapped key) was seen
	over    bool
	// durable: the output is kept in chunks for the job's durable record
	// (and replayed to a client that attaches); bounded by limit.
	durable bool
	chunks  []state.Chunk
	// The chunks are charged to the job's client key (owner) in held, at
	// most maxHeld for the key; keyFull: this message did not fit.
	owner   string
	held    *keyBytes
	maxHeld int64
	kept    int64
	keyFull bool
	// tooMany: the attempt went past maxMsgs within its byte cap. An
	// honest slave sends one message per read of the job's pipes, so the
	// count is the program's doing, not the slave's.
	tooMany bool
	// A test batch's verdicts: at most one per case (tests), each within
	// its message's field limit (16 KiB); not counted in bytes (see
	// routeVerdict).
	tests, verdicts int
}

func (sc *slaveConn) addRoute(jobID string, r *route) {
	sc.rmu.Lock()
	sc.routes[jobID].release()
	sc.routes[jobID] = r
	sc.rmu.Unlock()
}

func (sc *slaveConn) dropRoute(jobID string) {
	sc.rmu.Lock()
	sc.routes[jobID].release()
	delete(sc.routes, jobID)
	sc.rmu.Unlock()
}

func (sc *slaveConn) clearRoutes() {
	sc.rmu.Lock()
	for _, r := range sc.routes {
		r.release()
	}
	clear(sc.routes)
	sc.rmu.Unlock()
}

// clientLeft stops forwarding the job's output: its client is gone.
func (sc *slaveConn) clientLeft(jobID string) {
	sc.rmu.Lock()
	if r := sc.routes[jobID]; r != nil {
		r.client = nil
	}
	sc.rmu.Unlock()
}

// routeOutput counts o against its attempt's output cap. It returns the
// client to forward o to (nil to drop it: a stale attempt, or a client
// that left), and over when this message took the attempt past its cap in
// bytes or messages. A sealed job's bytes are counted as the plaintext
// they carry: each message less its tag, and each stream's first message
// less its header and wrapped key.
func (sc *slaveConn) routeOutput(o *wire.Output) (c *clientConn, over bool) {
	sc.rmu.Lock()
	defer sc.rmu.Unlock()
	r := sc.routes[o.JobID]
	if r == nil || r.attempt != o.Attempt || r.over {
		return nil, false
	}
	n := int64(len(o.Data) + len(o.Key))
	if r.sealed {
		allow := int64(seal.Overhead)
		if i := int(o.Stream) - wire.StreamStdout; len(o.Key) > 0 && i >= 0 && i < len(r.keyed) && !r.keyed[i] {
			r.keyed[i] = true
			allow += seal.HeaderSize + seal.WrappedSize
		}
		n = max(n-allow, 0)
	}
	r.bytes += n
	r.msgs++
	if r.bytes > r.limit || r.msgs > r.maxMsgs {
		r.over, r.tooMany = true, r.bytes <= r.limit
		return nil, true
	}
	if !r.keepChunk(o) {
		r.over, r.keyFull = true, true
		return nil, true
	}
	return r.client, false
}

// routeVerdict is routeOutput for a test batch's verdict (carried as o):
// it counts against the attempt's messages and its own bound, one per
// case (each within TestResult's field limits), not against the output
// cap in bytes, which bounds the program's output. An honest slave sends
// every case's verdict in full (up to a 1 KiB excerpt of the output and a
// 1 KiB message), whatever that cap: counted there, a client setting a
// small cap struck the slave (TestVerdictsStrikeNoSlave).
func (sc *slaveConn) routeVerdict(o *wire.Output) (c *clientConn, over bool) {
	sc.rmu.Lock()
	defer sc.rmu.Unlock()
	r := sc.routes[o.JobID]
	if r == nil || r.attempt != o.Attempt || r.over {
		return nil, false
	}
	r.msgs++
	r.verdicts++
	if r.verdicts > r.tests || r.msgs > r.maxMsgs {
		r.over, r.tooMany = true, r.verdicts <= r.tests
		return nil, true
	}
	if !r.keepChunk(o) {
		r.over, r.keyFull = true, true
		return nil, true
	}
	return r.client, false
}

func (sc *slaveConn) candidate(rec *slaveRecord, now time.Time) *candidate {
	c := sc.fill(rec, now)
	return &c
}

// fill returns what the scheduler knows of sc at now, given its record.
func (sc *slaveConn) fill(rec *slaveRecord, now time.Time) candidate {
	c := candidate{
		name: sc.id.Name, languages: sc.langs, cpuPercent: cpuFigure(sc.load.CPUPercent),
		inFlight: len(sc.running), slots: sc.reg.Slots,
		lastAssigned: sc.lastAssigned, slave: sc,
	}
	switch {
	case sc.load.Health != "":
		c.out = "unhealthy: " + sc.load.Health
	case rec == nil:
	case rec.quarantined(now):
		c.out = "quarantined"
	}
	if rec != nil && rec.quarantined(now) {
		c.until = rec.until
	}
	c.drained = rec != nil && rec.drained
	c.suspect = rec != nil && rec.strikes > 0
	return c
}

// reindexLocked brings sc's place in the scheduler's index up to date
// after something the scheduler reads of it changed (its jobs, its load,
// its record). It does nothing for a slave not registered or gone. s.mu
// is held.
func (s *Server) reindexLocked(sc *slaveConn) {
	if sc == nil || sc.slot == nil {
		return
	}
	s.index.update(sc.slot, sc.fill(s.slaveRecs[sc.id.Name], s.cfg.Now()))
}

// reindexNamedLocked is reindexLocked for every session of the slave
// called name (its record changed). s.mu is held.
func (s *Server) reindexNamedLocked(name string) {
	for _, sl := range slices.Clone(s.index.byName[name]) {
		s.reindexLocked(sl.c.slave)
	}
}

// refreshIndexLocked puts back the slaves whose quarantine has ended by
// now. s.mu is held.
func (s *Server) refreshIndexLocked(now time.Time) {
	if s.index.wakeAt.IsZero() || now.Before(s.index.wakeAt) {
		return
	}
	s.index.wakeAt = time.Time{}
	for sc := range s.slaves {
		if sc.slot != nil {
			s.index.update(sc.slot, sc.fill(s.slaveRecs[sc.id.Name], now))
		}
	}
}

// sendFile streams one in-memory file to the slave on its own stream. The
// stream fails when a write makes no progress for idle.
func (sc *slaveConn) sendFile(idle time.Duration, jobID, kind, name string, data payload, sum []byte, sealed bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	watch := time.AfterFunc(idle, cancel)
	defer watch.Stop()
	r := &progressReader{r: data.reader(), progress: func() { watch.Reset(idle) }}
	hdr := wire.FileHeader{JobID: jobID, Kind: kind, Name: name, Size: data.size(), SHA256: sum, Sealed: sealed}
	return sc.sess.SendFile(ctx, hdr, r)
}

// progressReader calls progress before each Read: the previous chunk was
// written.
type progressReader struct {
	r        io.Reader
	progress func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	p.progress()
	return p.r.Read(b)
}

// runSlave serves one slave session until it ends, then re-queues its jobs.
func (s *Server) runSlave(ctx context.Context, sc *slaveConn) {
	sc.running = map[string]*job{}
	sc.routes = map[string]*route{}
	sc.loadAt = s.cfg.Now()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		sc.refuse(wire.CodeShutdown, "master is shutting down")
		return
	}
	var replaced []*slaveConn
	for other := range s.slaves {
		if other.id.Name == sc.id.Name {
			// The same slave reconnected after its old session went silent.
			replaced = append(replaced, other)
		}
	}
	s.slaves[sc] = struct{}{}
	s.mu.Unlock()
	for _, other := range replaced {
		// claim admitted this session only because the old one went
		// silent (Budget.SilentAfter).
		other.log.Warn("slave session silent; replaced by a new one")
		other.refuse(wire.CodeReplaced, "replaced by a new session of the same slave")
	}
	s.cfg.Metrics.peers(wire.RoleSlave, 1)
	defer s.dropSlave(sc)
	for {
		env, err := sc.sess.Recv()
		if errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrMalformed) {
			sc.log.Warn("garbage on the control stream", "err", err)
			sc.refuse(wire.CodeBadRequest, err.Error())
			return
		}
		if err != nil {
			select {
			case <-sc.done:
			default:
				sc.log.Info("slave disconnected", "err", err)
			}
			return
		}
		if err := s.slaveMessage(sc, env); err != nil {
			sc.log.Warn("bad message from slave", "type", env.Type, "err", err)
			sc.refuse(wire.CodeBadRequest, err.Error())
			return
		}
	}
}

// dropSlave forgets a slave and re-queues whatever it was running.
func (s *Server) dropSlave(sc *slaveConn) {
	sc.close()
	s.mu.Lock()
	delete(s.slaves, sc)
	if sc.slot != nil {
		s.index.remove(sc.slot)
		sc.slot = nil
	}
	notes := s.requeueLocked(sc)
	if r := s.slaveRecs[sc.id.Name]; r != nil && r.empty(s.cfg.Now()) {
		delete(s.slaveRecs, sc.id.Name)
	}
	s.mu.Unlock()
	s.cfg.Metrics.peers(wire.RoleSlave, -1)
	if len(notes) > 0 {
		sc.log.Warn("slave lost with jobs running; re-queued them", "jobs", len(notes))
	}
	for _, n := range notes {
		n()
	}
	s.wake()
}

func (s *Server) slaveMessage(sc *slaveConn, env wire.Envelope) error {
	switch env.Type {
	case wire.MsgRegister:
		var r wire.Register
		if err := wire.Decode(env, &r); err != nil {
			return err
		}
		if r.Slots <= 0 || r.Slots > 1024 {
			return fmt.Errorf("register: %d slots", r.Slots)
		}
		if n := optionCount(r.Toolchains); n > wire.MaxItems {
			// Info and every Submit's check merge the options of all
			// slaves: each slave's share stays small.
			return fmt.Errorf("register: %d compiler options over all toolchains, at most %d", n, wire.MaxItems)
		}
		key, err := sc.checkSealKey(r.SealKey)
		if err != nil {
			return err
		}
		s.mu.Lock()
		again := sc.registered
		if !again {
			sc.reg, sc.registered, sc.sealKey = r, true, key
			sc.load.Slots = r.Slots
			sc.langs = make(map[string]bool, len(r.Toolchains))
			for _, t := range r.Toolchains {
				sc.langs[t.Language] = true
			}
			if _, ok := s.slaves[sc]; ok {
				sc.slot = s.index.add(sc.fill(s.slaveRecs[sc.id.Name], s.cfg.Now()))
			}
		}
		s.mu.Unlock()
		if again {
			// What a slave announced (its sealing key above all) is read
			// without the lock once registered; it must not change.
			return errors.New("register: already registered on this session")
		}
		sc.log.Info("slave registered", "slots", r.Slots, "languages", logArgs(languages(r.Toolchains)),
			"os", logString(r.OS), "kernel", logString(r.Kernel), "sandbox", logString(r.Sandbox), "sealing", key != nil, "held", len(r.Held))
		// Jobs the slave kept through a lost session: a durable master
		// takes back those it restored as on this slave; the others, and
		// all of them on a master that keeps no job beyond its sessions
		// (it re-queued them when the slave was lost), are cancelled if
		// still running, and their results dropped as stale.
		s.reclaim(sc, r.Held)
		s.wake()
	case wire.MsgLoad:
		var l wire.Load
		if err := wire.Decode(env, &l); err != nil {
			return err
		}
		s.load(sc, l)
	case wire.MsgOutput:
		// An Output in the very form the master would encode it again
		// is read in place and relayed as received; any other is decoded
		// (with every check of Decode) and encoded again. Either way it
		// is counted against its attempt's cap first.
		o, same := wire.ParseOutput(env.Body)
		if !same {
			if err := wire.Decode(env, &o); err != nil {
				return err
			}
		}
		c, over := sc.routeOutput(&o)
		if over {
			s.outputOver(sc, o.JobID, o.Attempt)
		}
		if c != nil {
			s.cfg.Metrics.bytes("output", len(o.Data))
			if same {
				c.sendEncoded(wire.Envelope{Type: wire.MsgOutput, Body: env.Body})
			} else {
				c.send(wire.MsgOutput, 0, o)
			}
		}
	case wire.MsgTestResult:
		return s.testResult(sc, env)
	case wire.MsgResult:
		var r wire.Result
		if err := wire.Decode(env, &r); err != nil {
			return err
		}
		s.result(sc, r)
	default:
		return fmt.Errorf("unexpected %v on a slave session", env.Type)
	}
	return nil
}

// checkSealKey checks the sealing key a slave announced against the one
// its CA-signed certificate carries: a mismatch is refused, so that a
// sealed job is only ever wrapped for a key the CA bound to this slave. It
// returns the key to use, or nil when the slave cannot take sealed jobs.
func (sc *slaveConn) checkSealKey(announced []byte) ([]byte, error) {
	if len(announced) == 0 {
		return nil, nil
	}
	inCert, err := certs.SealKeyOf(sc.cert)
	if errors.Is(err, certs.ErrNoSealKey) {
		sc.log.Warn("slave announced a sealing key but its certificate carries none; no sealed jobs for it (re-issue its bundle)")
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	if !bytes.Equal(inCert, announced) {
		return nil, errors.New("register: the announced sealing key is not the one in the slave's certificate")
	}
	return inCert, nil
}

// load records a load report. Only a change that can free a slot (more
// slots, health back) wakes the dispatcher, and at most once every
// Budget.LoadWakeEvery per slave: the regular tick places jobs by the new
// figures, so that a slave reporting every millisecond, its slots going
// up and down, does not run a dispatch each time.
func (s *Server) load(sc *slaveConn, l wire.Load) {
	s.mu.Lock()
	now := s.cfg.Now()
	wake := (l.Slots > sc.load.Slots || (sc.load.Health != "" && l.Health == "")) &&
		now.Sub(sc.loadWake) >= s.cfg.Budget.LoadWakeEvery
	if wake {
		sc.loadWake = now
	}
	if l.Health != sc.load.Health {
		if l.Health != "" {
			sc.log.Warn("slave reports itself unhealthy; no jobs for it", "health", truncate(l.Health, 200))
		} else {
			sc.log.Info("slave reports itself healthy again")
		}
	}
	sc.load, sc.loadAt = saneLoad(l), now
	s.reindexLocked(sc)
	s.mu.Unlock()
	if wake {
		s.wake()
	}
}

// saneLoad is a slave's load report as the master keeps it. The report
// is the slave's word: its CPU use is taken within 0-100 (see cpuFigure),
// and a load average that is not a finite figure of at least 0 counts as
// 0, so that no slave can put NaN or an infinity into the admin's JSON
// (json.Marshal refuses them: one slave's report made "server list" fail
// for every admin) or the metrics.
func saneLoad(l wire.Load) wire.Load {
	l.CPUPercent = cpuFigure(l.CPUPercent)
	for _, v := range []*float64{&l.Load1, &l.Load5, &l.Load15} {
		if math.IsNaN(*v) || math.IsInf(*v, 0) || *v < 0 {
			*v = 0
		}
	}
	return l
}

// cpuFigure is a slave's reported CPU use as the scheduler orders slaves
// by it: within 0-100, and 100 for a figure that is not a number. A NaN
// has no place in the index's order (every comparison with it is false):
// with one there the treap could not find the slaves it holds (an
// unhealthy slave stayed picked, others were lost, and a cycle hung the
// dispatcher under s.mu).
func cpuFigure(v float64) float64 {
	switch {
	case math.IsNaN(v) || v > 100:
		return 100
	case v < 0:
		return 0
	}
	return v
}

// outputOver ends a job whose slave sent more output than its cap: the
// slave is struck and told to cancel, the client gets output_limit.
func (s *Server) outputOver(sc *slaveConn, jobID string, attempt int) {
	sc.rmu.Lock()
	var keyFull, tooMany bool
	if r := sc.routes[jobID]; r != nil {
		keyFull, tooMany = r.keyFull, r.tooMany
	}
	sc.rmu.Unlock()
	switch {
	case keyFull:
		s.endForKey(sc, jobID, attempt, wire.StatusOutputLimit,
			fmt.Sprintf("the client key's running jobs hold %d bytes of output for their durable records (JobBudget.DurableOutputPerClient)", s.cfg.Budget.Jobs.DurableOutputPerClient))
		return
	case tooMany:
		// Not the slave's fault (see route.tooMany): no strike, or any
		// client's program writing a byte at a time quarantined it
		// (TestManySmallOutputsStrikeNoSlave).
		s.endForKey(sc, jobID, attempt, wire.StatusOutputLimit,
			fmt.Sprintf("the program's output took more than %d messages (JobBudget.OutputMessages): write it in larger pieces", s.cfg.Budget.Jobs.OutputMessages))
		return
	}
	s.mu.Lock()
	j := sc.running[jobID]
	limit := int64(0)
	if j != nil {
		limit = j.submit.Limits.OutputBytes
		if limit <= 0 {
			limit = s.cfg.Limits.MaxOutput
		}
	}
	s.mu.Unlock()
	if j == nil {
		return
	}
	s.failAttempt(sc, j, attempt, wire.StatusOutputLimit,
		fmt.Sprintf("slave %s sent more than the job's output cap (%d bytes or %d messages)", sc.id.Name, limit, s.cfg.Budget.Jobs.OutputMessages), false)
}

// result ends a job: exactly one Result reaches the client.
func (s *Server) result(sc *slaveConn, r wire.Result) {
	s.mu.Lock()
	j := sc.running[r.JobID]
	if j == nil || j.attempt != r.Attempt {
		s.mu.Unlock()
		sc.log.Debug("stale result dropped", "job", r.JobID, "attempt", r.Attempt)
		return
	}
	if !slaveStatus(r.Status) {
		s.mu.Unlock()
		// The status is a metrics label and goes to the client: one made
		// up per job would grow both without bound.
		s.failAttempt(sc, j, r.Attempt, wire.StatusInternalError, fmt.Sprintf("slave %s sent an unknown status %q", sc.id.Name, truncate(r.Status, 40)), true)
		return
	}
	if r.Status == wire.StatusInternalError && r.SlaveFault {
		s.mu.Unlock()
		// The slave's own fault (its disk, its toolchain): the job runs
		// again elsewhere once; the second time the Result stands.
		s.failAttempt(sc, j, r.Attempt, r.Status, fmt.Sprintf("slave %s: %s", sc.id.Name, r.Detail), true)
		return
	}
	if rec := s.slaveRecs[sc.id.Name]; rec != nil && r.Status != wire.StatusCancelled {
		rec.good()
		s.reindexNamedLocked(sc.id.Name) // the record is the name's: every session of it
	}
	client := j.client
	j.outcome = outcomeOf(r)
	r.Slave = sc.id.Name
	f := s.proposeResultLocked(j, r, sc.outputChunks(j.id))
	s.finishLocked(j, r.Status)
	sc.finished++
	lang, e2e := j.submit.Language, j.finished.Sub(j.created)
	s.mu.Unlock()
	tell := func() {
		sc.log.Info("job finished", "job", j.id, "status", r.Status, "wall_ms", r.WallMs, "cached", r.Cached)
		s.cfg.Metrics.finished(lang, r.Status, e2e)
		if client != nil {
			client.send(wire.MsgResult, 0, r)
			client.progress(wire.JobState{JobID: j.id, State: endState(r.Status), Slave: sc.id.Name, Attempt: r.Attempt})
			s.delivered(j)
		}
	}
	if f == nil {
		tell()
		s.wake()
		return
	}
	// Written before the client hears of it: a restart then never runs a
	// job again whose result a client saw. The slave's session does not
	// wait for the write: its next Results go into the same log entry
	// (one commit for all), and its freed slot takes a job meanwhile.
	s.goRun(func() {
		if _, err := f.Wait(); err != nil {
			sc.log.Warn("job result not written to the durable state", "job", j.id, "err", err)
		}
		tell()
	})
	s.wake()
}

// checkHeartbeats drops slaves that stopped reporting their load.
func (s *Server) checkHeartbeats() {
	limit := 3*s.cfg.HeartbeatInterval + time.Second
	now := s.cfg.Now()
	s.mu.Lock()
	var dead []*slaveConn
	var silent []time.Duration
	for sc := range s.slaves {
		if d := now.Sub(sc.loadAt); d > limit {
			dead = append(dead, sc)
			silent = append(silent, d)
		}
	}
	s.mu.Unlock()
	for i, sc := range dead {
		sc.log.Warn("slave missed its heartbeats; dropping it", "silent_for", silent[i].Round(time.Millisecond))
		sc.close()
	}
}

// slaveStatus reports whether a slave may end a job with status.
func slaveStatus(status string) bool {
	switch status {
	case wire.StatusOK, wire.StatusCompileError, wire.StatusRuntimeError, wire.StatusTimeLimit,
		wire.StatusMemoryLimit, wire.StatusOutputLimit, wire.StatusInternalError, wire.StatusCancelled:
		return true
	}
	return false
}

// optionCount is the number of compiler options over toolchains.
func optionCount(ts []wire.Toolchain) int {
	n := 0
	for _, t := range ts {
		n += len(t.Options)
	}
	return n
}

func languages(ts []wire.Toolchain) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Language)
	}
	return out
}

// sortJobs orders jobs by creation, oldest first.
func sortJobs(js []*job) {
	slices.SortFunc(js, func(a, b *job) int { return a.created.Compare(b.created) })
}
