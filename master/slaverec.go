package master

import (
	"fmt"
	"time"

	"kiln/master/state"
)

// slaveRecord is what the master remembers of a slave by name, across its
// sessions: whether an admin drained it, and its strikes and quarantine.
// A slave that reconnects finds its record as it left it. Guarded by
// Server.mu.
type slaveRecord struct {
	drained     bool
	strikes     int       // slave-side failures since its last good job
	quarantines int       // quarantines since its last good job (the backoff exponent)
	until       time.Time // quarantined until then
	reason      string    // the failure that struck it last
}

// quarantined reports whether the slave is quarantined at now.
func (r *slaveRecord) quarantined(now time.Time) bool { return now.Before(r.until) }

// strike counts one slave-side failure; at b.QuarantineStrikes in a row the
// slave is quarantined, for longer each time. It returns the quarantine
// started, or 0.
func (r *slaveRecord) strike(now time.Time, b JobBudget, reason string) time.Duration {
	r.strikes++
	r.reason = reason
	if r.strikes < b.QuarantineStrikes {
		return 0
	}
	d := b.QuarantineBase << min(r.quarantines, 16)
	d = min(d, b.QuarantineMax)
	r.strikes, r.until = 0, now.Add(d)
	r.quarantines++
	return d
}

// good records a job the slave ran to an answer of its own.
func (r *slaveRecord) good() { r.strikes, r.quarantines = 0, 0 }

// empty reports whether the record holds nothing worth keeping.
func (r *slaveRecord) empty(now time.Time) bool {
	return !r.drained && r.strikes == 0 && r.quarantines == 0 && !r.quarantined(now)
}

// status words the record for listings: "ok", "quarantined 25s (...)",
// "1 strike (...)".
func (r *slaveRecord) status(now time.Time) string {
	switch {
	case r.quarantined(now):
		return fmt.Sprintf("quarantined %s (%s)", r.until.Sub(now).Round(time.Second), r.reason)
	case r.strikes > 0:
		return fmt.Sprintf("%d strike(s) (%s)", r.strikes, r.reason)
	}
	return "ok"
}

// recordLocked returns the record of the slave called name, creating it.
// s.mu is held.
func (s *Server) recordLocked(name string) *slaveRecord {
	r := s.slaveRecs[name]
	if r == nil {
		r = &slaveRecord{}
		s.slaveRecs[name] = r
	}
	return r
}

// strikeLocked counts a slave-side failure against the slave called name
// and logs a quarantine. s.mu is held.
func (s *Server) strikeLocked(sc *slaveConn, reason string) {
	now := s.cfg.Now()
	r := s.recordLocked(sc.id.Name)
	d := r.strike(now, s.cfg.Budget.Jobs, reason)
	s.reindexNamedLocked(sc.id.Name)
	if d > 0 {
		sc.log.Warn("slave quarantined", "for", d, "reason", truncate(reason, 200))
		s.cfg.Metrics.quarantined()
		// Durable: a restarted master keeps it out until the same time.
		s.waitLogged(s.proposeLocked(&state.Command{Kind: state.KindQuarantine, Slave: sc.id.Name, Until: r.until}),
			"quarantine", "")
	} else {
		sc.log.Info("slave struck", "strikes", r.strikes, "reason", truncate(reason, 200))
	}
}
