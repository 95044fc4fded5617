package master

import "time"

// candidate is what the scheduler knows of one slave when it places a job.
type candidate struct {
	name         string
	languages    map[string]bool
	cpuPercent   float64 // last reported CPU use, 0-100
	inFlight     int     // jobs assigned by the master and not finished
	slots        int
	drained      bool
	out          string    // why the slave takes no job now (quarantined, unhealthy), or ""
	suspect      bool      // struck since its last good job: used only when no clean slave is free
	lastAssigned time.Time // when this slave last got a job (fair tie-breaking)
	until        time.Time // when its quarantine ends, if it is quarantined
	slave        *slaveConn
}

// score is the combined load of a slave: its reported CPU (0-1) plus the
// share of its slots the master has filled. The in-flight term moves with
// every assignment, so a burst spreads out even when every load report is
// stale.
func (c *candidate) score() float64 {
	if c.slots <= 0 {
		return 2
	}
	return c.cpuPercent/100 + float64(c.inFlight)/float64(c.slots)
}

// free reports whether c can take one more job of lang now.
func (c *candidate) free(lang string) bool {
	return c.available() && c.languages[lang] && c.inFlight < c.slots
}

// available reports whether c takes jobs at all now.
func (c *candidate) available() bool { return !c.drained && c.out == "" }

// scoreEpsilon is how close two scores must be to count as a tie. CPU
// reports jitter by a few percent; treating them as equal lets the fair
// tie-break spread work instead of chasing noise.
const scoreEpsilon = 0.05

// pick returns the index of the slave that should run a job of lang, or -1
// when none has a free slot for it. Among the free slaves the lowest score
// wins; ties go to the slave that waited longest since its last job.
func pick(cands []*candidate, lang string) int { return pickFor(cands, lang, "") }

// pickFor is pick for a job that must not go back to the slave called
// avoid (one that failed it on the slave's side; "" avoids none). It is
// the scheduling policy written as a scan; the dispatcher asks
// [slaveIndex.pick], which must choose the same slave.
//
// A suspect slave (one that failed a job on its side since its last good
// one) comes after every clean one, whatever its load: a slave that
// announces many free slots and 0 % CPU would otherwise take the next job
// too. Among the free slaves of the first kind that has any, the lowest
// score sets the bar; every slave whose score ties it (see tied) is as
// good, and the one that waited longest since its last job wins, then
// the first by name.
func pickFor(cands []*candidate, lang, avoid string) int { return pickWrapped(cands, lang, avoid, nil) }

// pickWrapped is pickFor for a sealed job whose client wrapped its key
// ahead for some slaves (wrapped reports which; nil: none): among the
// slaves that tie for the lowest score, those it can go to without a
// WrapRequest round trip to its client come first, then the rule of
// pickFor. The preference never takes a job to a busier slave.
func pickWrapped(cands []*candidate, lang, avoid string, wrapped func(*slaveConn) bool) int {
	for _, suspect := range [2]bool{false, true} {
		ok := func(c *candidate) bool {
			return c.suspect == suspect && c.free(lang) && (avoid == "" || c.name != avoid)
		}
		lowest := -1
		for i, c := range cands {
			if ok(c) && (lowest < 0 || c.score() < cands[lowest].score()) {
				lowest = i
			}
		}
		if lowest < 0 {
			continue
		}
		m, best := cands[lowest].score(), -1
		if wrapped != nil {
			for i, c := range cands {
				if ok(c) && tied(m, c.score()) && wrapped(c.slave) && (best < 0 || idlerThan(c, cands[best])) {
					best = i
				}
			}
			if best >= 0 {
				return best
			}
		}
		for i, c := range cands {
			if ok(c) && tied(m, c.score()) && (best < 0 || idlerThan(c, cands[best])) {
				best = i
			}
		}
		return best
	}
	return -1
}

// tied reports whether a slave of score s is as good as the lowest score:
// within scoreEpsilon of it.
func tied(lowest, s float64) bool { return !(lowest < s-scoreEpsilon) }

// idlerThan reports whether a waited longer than b since its last job,
// then whether its name comes first.
func idlerThan(a, b *candidate) bool {
	if !a.lastAssigned.Equal(b.lastAssigned) {
		return a.lastAssigned.Before(b.lastAssigned)
	}
	return a.name < b.name
}

// supports reports whether any slave that takes jobs, free or not, runs
// lang, other than the one called avoid.
func supports(cands []*candidate, lang, avoid string) bool {
	for _, c := range cands {
		if c.languages[lang] && c.available() && (avoid == "" || c.name != avoid) {
			return true
		}
	}
	return false
}

// anyFree reports whether some slave has a free slot.
func anyFree(cands []*candidate) bool {
	for _, c := range cands {
		if c.available() && c.inFlight < c.slots {
			return true
		}
	}
	return false
}

// drainedRun reports whether lang is run only by drained slaves: some
// connected slave runs it, and every one that does is drained.
func drainedRun(cands []*candidate, lang string) bool {
	found := false
	for _, c := range cands {
		if c.languages[lang] {
			if !c.drained {
				return false
			}
			found = true
		}
	}
	return found
}
