package master

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"kiln/certs"
	"kiln/transport/wire"
)

// slaveConn is a connected slave. Fields below peer are guarded by Server.mu.
type slaveConn struct {
	*peer
	registered   bool
	reg          wire.Register
	load         wire.Load
	loadAt       time.Time
	running      map[string]*job
	drained      bool
	lastAssigned time.Time
	finished     int // jobs finished on this slave
	// sealKey is the slave's X25519 sealing key, announced in Register and
	// equal to the one its certificate carries; nil when it has none, and
	// then no sealed job is placed on it.
	sealKey []byte
}

func (sc *slaveConn) candidate() *candidate {
	langs := make(map[string]bool, len(sc.reg.Toolchains))
	for _, t := range sc.reg.Toolchains {
		langs[t.Language] = true
	}
	return &candidate{
		name: sc.id.Name, languages: langs, cpuPercent: sc.load.CPUPercent,
		inFlight: len(sc.running), slots: sc.reg.Slots, drained: sc.drained,
		lastAssigned: sc.lastAssigned, slave: sc,
	}
}

// sendFile streams one in-memory file to the slave on its own stream.
func (sc *slaveConn) sendFile(jobID, kind, name string, data, sum []byte, sealed bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go func() {
		select {
		case <-sc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	hdr := wire.FileHeader{JobID: jobID, Kind: kind, Name: name, Size: int64(len(data)), SHA256: sum, Sealed: sealed}
	return sc.sess.SendFile(ctx, hdr, bytes.NewReader(data))
}

// runSlave serves one slave session until it ends, then re-queues its jobs.
func (s *Server) runSlave(ctx context.Context, sc *slaveConn) {
	sc.running = map[string]*job{}
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
			// The same slave reconnected before its old session was noticed dead.
			replaced = append(replaced, other)
		}
	}
	s.slaves[sc] = struct{}{}
	sc.drained = s.drainedNames[sc.id.Name]
	s.mu.Unlock()
	for _, other := range replaced {
		// Not inline: a dead old session would hold up the new one for
		// the refusal's grace period.
		s.goRun(func() { other.refuse(wire.CodeKicked, "replaced by a new session of the same slave") })
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
	notes := s.requeueLocked(sc)
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
		key, err := sc.checkSealKey(r.SealKey)
		if err != nil {
			return err
		}
		s.mu.Lock()
		again := sc.registered
		if !again {
			sc.reg, sc.registered, sc.sealKey = r, true, key
			sc.load.Slots = r.Slots
		}
		s.mu.Unlock()
		if again {
			// What a slave announced (its sealing key above all) is read
			// without the lock once registered; it must not change.
			return errors.New("register: already registered on this session")
		}
		sc.log.Info("slave registered", "slots", r.Slots, "languages", languages(r.Toolchains),
			"os", r.OS, "kernel", r.Kernel, "sandbox", r.Sandbox, "sealing", key != nil)
		s.wake()
	case wire.MsgLoad:
		var l wire.Load
		if err := wire.Decode(env, &l); err != nil {
			return err
		}
		s.mu.Lock()
		sc.load, sc.loadAt = l, s.cfg.Now()
		s.mu.Unlock()
		s.wake()
	case wire.MsgOutput:
		var o wire.Output
		if err := wire.Decode(env, &o); err != nil {
			return err
		}
		if c := s.clientFor(sc, o.JobID, o.Attempt); c != nil {
			s.cfg.Metrics.bytes("output", len(o.Data))
			c.send(wire.MsgOutput, 0, o)
		}
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

// clientFor returns the client of a job if sc is running this attempt of
// it and the client is still there, else nil (stale output of a job that
// moved elsewhere is dropped).
func (s *Server) clientFor(sc *slaveConn, jobID string, attempt int) *clientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := sc.running[jobID]
	if j == nil || j.attempt != attempt {
		return nil
	}
	return j.client
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
	client := j.client
	s.finishLocked(j, r.Status)
	sc.finished++
	lang, e2e := j.submit.Language, j.finished.Sub(j.created)
	s.mu.Unlock()
	r.Slave = sc.id.Name
	sc.log.Info("job finished", "job", j.id, "status", r.Status, "wall_ms", r.WallMs, "cached", r.Cached)
	s.cfg.Metrics.finished(lang, r.Status, e2e)
	if client != nil {
		client.send(wire.MsgResult, 0, r)
		state := wire.StateDone
		if r.Status == wire.StatusInternalError {
			state = wire.StateFailed
		}
		client.send(wire.MsgJobState, 0, wire.JobState{JobID: j.id, State: state, Slave: sc.id.Name, Attempt: r.Attempt})
	}
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
