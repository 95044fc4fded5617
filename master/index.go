package master

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"kiln/transport/wire"
)

// slaveIndex is the scheduler's standing view of the registered slaves.
// It is kept up to date as they change (Register, load reports,
// assignments, ended jobs, strikes, drains, the end of a quarantine: see
// Server.reindexLocked) instead of being rebuilt for every dispatch, so
// that placing a job costs O(classes × log slaves), not O(slaves), and
// allocates nothing. It is guarded by Server.mu.
//
// Slaves are grouped in classes: slaves that announced the same toolchains
// (languages and compiler options, in order), that have a sealing key or
// not, and that judge test batches or not pass every filter of [fitting]
// and [candidatesFor] alike. Each class keeps its free slaves (taking
// jobs, with a free slot) in two treaps, clean and suspect, ordered by
// score; every node knows the slave idle longest in its subtree, so that
// [slaveIndex.pick] finds the slave [pickFor] would choose in one walk
// down each class that fits the job.
type slaveIndex struct {
	classes map[string]*slaveClass
	byLang  map[string][]*slaveClass
	byName  map[string][]*slot
	free    int       // slaves that take jobs and have a free slot
	seq     uint64    // the last slot's number
	wakeAt  time.Time // the earliest end of a quarantine seen, or zero
}

// slaveClass is the slaves that announced the same capabilities.
type slaveClass struct {
	key              string
	toolchains       []wire.Toolchain
	sealing, judging bool
	clean, suspect   treap // free slaves, clean and struck
	avail            int   // slaves that take jobs, free or not
	n                int   // slaves in the class
}

// slot is one registered slave's place in the index: its candidate, kept
// current, and its node in its class's treap while it is free.
type slot struct {
	c     candidate
	class *slaveClass
	node  tnode
	tree  *treap // the treap holding node, or nil
	avail bool   // counted in class.avail
	free  bool   // counted in slaveIndex.free
}

func newSlaveIndex() *slaveIndex {
	return &slaveIndex{classes: map[string]*slaveClass{}, byLang: map[string][]*slaveClass{}, byName: map[string][]*slot{}}
}

// classKey names the capabilities a slave's class is made of.
func classKey(tcs []wire.Toolchain, sealing, judging bool) string {
	var b strings.Builder
	for _, t := range tcs {
		b.WriteString(t.Language)
		for _, o := range t.Options {
			b.WriteByte(0)
			b.WriteString(o)
		}
		b.WriteByte(1)
	}
	if sealing {
		b.WriteByte('s')
	}
	if judging {
		b.WriteByte('j')
	}
	return b.String()
}

// add puts a newly registered slave in the index with candidate c (see
// slaveConn.fill) and returns its slot.
func (x *slaveIndex) add(c candidate) *slot {
	sc := c.slave
	sealing := sc.sealKey != nil
	judging := wire.HasFeature(sc.hello.Features, wire.FeatureTests)
	key := classKey(sc.reg.Toolchains, sealing, judging)
	cl := x.classes[key]
	if cl == nil {
		cl = &slaveClass{key: key, toolchains: sc.reg.Toolchains, sealing: sealing, judging: judging}
		x.classes[key] = cl
		for lang := range sc.langs {
			x.byLang[lang] = append(x.byLang[lang], cl)
		}
	}
	cl.n++
	x.seq++
	sl := &slot{class: cl}
	sl.node.sl, sl.node.seq, sl.node.prio = sl, x.seq, splitmix(x.seq)
	x.byName[c.name] = append(x.byName[c.name], sl)
	x.update(sl, c)
	return sl
}

// remove takes a slave's slot out of the index.
func (x *slaveIndex) remove(sl *slot) {
	c := sl.c
	c.drained = true
	x.update(sl, c)
	cl := sl.class
	if cl.n--; cl.n == 0 {
		delete(x.classes, cl.key)
		for lang, cls := range x.byLang {
			if cls = slices.DeleteFunc(cls, func(o *slaveClass) bool { return o == cl }); len(cls) == 0 {
				delete(x.byLang, lang)
			} else {
				x.byLang[lang] = cls
			}
		}
	}
	name := sl.c.name
	if ss := slices.DeleteFunc(x.byName[name], func(o *slot) bool { return o == sl }); len(ss) == 0 {
		delete(x.byName, name)
	} else {
		x.byName[name] = ss
	}
}

// update sets the candidate of sl to c and moves it where c puts it.
func (x *slaveIndex) update(sl *slot, c candidate) {
	if sl.tree != nil {
		sl.tree.erase(&sl.node)
		sl.tree = nil
	}
	sl.c = c
	cl := sl.class
	avail := c.available()
	free := avail && c.inFlight < c.slots
	if avail != sl.avail {
		sl.avail = avail
		cl.avail += delta(avail)
	}
	if free != sl.free {
		sl.free = free
		x.free += delta(free)
	}
	if !c.until.IsZero() && (x.wakeAt.IsZero() || c.until.Before(x.wakeAt)) {
		x.wakeAt = c.until
	}
	if !free {
		return
	}
	n := &sl.node
	n.score, n.last, n.name = c.score(), stamp(c.lastAssigned), c.name
	sl.tree = &cl.clean
	if c.suspect {
		sl.tree = &cl.suspect
	}
	sl.tree.insert(n)
}

// delta is +1 for a count gained, -1 for one lost.
func delta(gained bool) int {
	if gained {
		return 1
	}
	return -1
}

// stamp orders assignment times; never assigned comes first.
func stamp(t time.Time) int64 {
	if t.IsZero() {
		return -1 << 63
	}
	return t.UnixNano()
}

// fits reports whether the slaves of cl can run sub as asked (see
// candidatesFor and fitting); they all run its language.
func (cl *slaveClass) fits(sub *wire.Submit) bool {
	return (!sub.Sealed || cl.sealing) && (sub.Tests == 0 || cl.judging) &&
		(len(sub.Options) == 0 || allows(cl.toolchains, sub.Language, sub.Options))
}

// anyFree reports whether some slave takes jobs and has a free slot.
func (x *slaveIndex) anyFree() bool { return x.free > 0 }

// pick returns the slave that should run sub, never the one called avoid
// ("" avoids none), or nil when none has a free slot for it: the slave
// [pickFor] would choose among the candidates [fitting] keeps.
func (x *slaveIndex) pick(sub *wire.Submit, avoid string) *candidate {
	return x.pickWrapped(sub, avoid, nil)
}

// pickJob is pick for queued job j, preferring, among the slaves that tie
// for the lowest score, one its client wrapped the job's key for
// ([pickWrapped]). s.mu is held.
func (x *slaveIndex) pickJob(j *job) *candidate {
	if !j.submit.Sealed || len(j.wraps) == 0 && len(j.submit.Wraps) == 0 {
		return x.pickWrapped(&j.submit, j.avoid, nil)
	}
	return x.pickWrapped(&j.submit, j.avoid, j)
}

// wrappedFor reports whether j can go to sc without a WrapRequest.
func (j *job) wrappedFor(sc *slaveConn) bool {
	k, _ := j.storedWrap(sc)
	return k != nil
}

// pickWrapped is pick preferring, when j is not nil, among the slaves
// that tie for the lowest score, those j's key is wrapped for: the slave
// [pickWrapped] (the scan) would choose. It looks at the slaves the wraps
// name only (at most wire.MaxWraps in a Submit), not at every one, and
// allocates nothing.
func (x *slaveIndex) pickWrapped(sub *wire.Submit, avoid string, j *job) *candidate {
	classes := x.byLang[sub.Language]
	if x.free == 0 || len(classes) == 0 {
		return nil
	}
	if avoid != "" {
		// Out of the treaps for the walk (a retried job: rare).
		var out []*slot
		for _, sl := range x.byName[avoid] {
			if sl.tree != nil {
				sl.tree.erase(&sl.node)
				out = append(out, sl)
			}
		}
		defer func() {
			for _, sl := range out {
				sl.tree.insert(&sl.node)
			}
		}()
	}
	for _, suspect := range [2]bool{false, true} {
		lowest, found := 0.0, false
		for _, cl := range classes {
			if n := cl.tree(suspect).first(); n != nil && (!found || n.score < lowest) && cl.fits(sub) {
				lowest, found = n.score, true
			}
		}
		if !found {
			continue
		}
		var best *tnode
		if j != nil {
			consider := func(name string) {
				if name == avoid {
					return
				}
				for _, sl := range x.byName[name] {
					if sl.tree == nil || sl.tree != sl.class.tree(suspect) || !sl.c.languages[sub.Language] ||
						!tied(lowest, sl.node.score) || !sl.class.fits(sub) || !j.wrappedFor(sl.c.slave) {
						continue
					}
					if best == nil || idler(&sl.node, best) {
						best = &sl.node
					}
				}
			}
			for name := range j.wraps {
				consider(name)
			}
			for _, w := range j.submit.Wraps {
				consider(w.Slave)
			}
			if best != nil {
				return &best.sl.c
			}
		}
		for _, cl := range classes {
			if n := cl.tree(suspect).idlest(lowest); n != nil && (best == nil || idler(n, best)) && cl.fits(sub) {
				best = n
			}
		}
		return &best.sl.c
	}
	return nil
}

func (cl *slaveClass) tree(suspect bool) *treap {
	if suspect {
		return &cl.suspect
	}
	return &cl.clean
}

// supports reports whether some slave that takes jobs, free or not, runs
// lang (with a sealing key when sealed), other than the one called avoid:
// [supports] over [candidatesFor].
func (x *slaveIndex) supports(lang string, sealed bool, avoid string) bool {
	for _, cl := range x.byLang[lang] {
		if sealed && !cl.sealing {
			continue
		}
		n := cl.avail
		for _, sl := range x.byName[avoid] {
			if sl.class == cl && sl.avail {
				n--
			}
		}
		if n > 0 {
			return true
		}
	}
	return false
}

// runs reports whether some slave that takes jobs, free or not, can run
// sub as asked.
func (x *slaveIndex) runs(sub *wire.Submit) bool {
	for _, cl := range x.byLang[sub.Language] {
		if cl.avail > 0 && cl.fits(sub) {
			return true
		}
	}
	return false
}

// toolchains returns the distinct toolchains registered slaves announced
// for lang.
func (x *slaveIndex) toolchains(lang string) []wire.Toolchain {
	var out []wire.Toolchain
	for _, cl := range x.byLang[lang] {
		for _, t := range cl.toolchains {
			if t.Language == lang && !slices.ContainsFunc(out, func(o wire.Toolchain) bool { return sameToolchain(o, t) }) {
				out = append(out, t)
			}
		}
	}
	return out
}

// splitmix is a fixed mix of n: the treap priorities, spread evenly and
// the same from run to run.
func splitmix(n uint64) uint64 {
	n += 0x9e3779b97f4a7c15
	n = (n ^ n>>30) * 0xbf58476d1ce4e5b9
	n = (n ^ n>>27) * 0x94d049bb133111eb
	return n ^ n>>31
}

// verifyIndexLocked panics when the index disagrees with the slaves it
// stands for, or picks another slave than [pickFor] would for one of the
// first queued jobs: a test-only check (Server.checkIndex) that every
// change the scheduler reads went through reindexLocked. s.mu is held.
func (s *Server) verifyIndexLocked(now time.Time) {
	x, n, free := s.index, 0, 0
	fail := func(format string, args ...any) { panic(fmt.Sprintf("master: scheduler index: "+format, args...)) }
	for sc := range s.slaves {
		if !sc.registered {
			continue
		}
		n++
		if sc.slot == nil {
			fail("registered slave %s not indexed", sc.id.Name)
		}
		want, got := sc.fill(s.slaveRecs[sc.id.Name], now), sc.slot.c
		if want.available() != got.available() || want.suspect != got.suspect || want.inFlight != got.inFlight ||
			want.score() != got.score() || !want.lastAssigned.Equal(got.lastAssigned) || want.drained != got.drained {
			fail("slave %s indexed as %+v, is %+v", sc.id.Name, got, want)
		}
		isFree := want.available() && want.inFlight < want.slots
		if isFree {
			free++
		}
		if isFree != (sc.slot.tree != nil) || isFree != sc.slot.free || want.available() != sc.slot.avail {
			fail("slave %s: free %v, in a treap %v", sc.id.Name, isFree, sc.slot.tree != nil)
		}
	}
	classed := 0
	for _, cl := range x.classes {
		classed += cl.n
	}
	if classed != n || free != x.free {
		fail("%d slaves in classes, %d registered; %d free, %d counted", classed, n, free, x.free)
	}
	cands := s.candidatesLocked(now)
	for i, j := range s.queue.all() {
		if i == 50 {
			break
		}
		cs := fitting(candidatesFor(cands, j.submit.Sealed), j.submit)
		var wrapped func(*slaveConn) bool
		if j.submit.Sealed {
			wrapped = j.wrappedFor
		}
		k, c := pickWrapped(cs, j.submit.Language, j.avoid, wrapped), s.index.pickJob(j)
		switch {
		case k < 0 && c == nil:
		case k < 0 || c == nil:
			fail("job %s: the scan picks %d, the index %v", j.id, k, c != nil)
		case cs[k].name != c.name || !cs[k].lastAssigned.Equal(c.lastAssigned):
			fail("job %s: the scan picks %s, the index %s", j.id, cs[k].name, c.name)
		}
	}
}

// verifyDispatchedLocked panics when a dispatch left a job queued that a
// slave could take (head-of-line blocking, or a kind of job wrongly
// passed over): a test-only check (Server.checkIndex). s.mu is held.
func (s *Server) verifyDispatchedLocked() {
	for i, j := range s.queue.all() {
		if i == 200 {
			return
		}
		if c := s.index.pickJob(j); j.accepted && c != nil {
			panic(fmt.Sprintf("master: dispatch left job %s queued while slave %s could take it", j.id, c.name))
		}
	}
}
