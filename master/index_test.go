package master

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"kiln/auth"
	"kiln/transport/wire"
)

// schedRig is a Server reduced to what the scheduler reads: slaves,
// their records and a clock the test moves.
type schedRig struct {
	t   testing.TB
	s   *Server
	now time.Time
	n   int
}

func newSchedRig(t testing.TB) *schedRig {
	r := &schedRig{t: t, now: time.Unix(1_000_000, 0)}
	r.s = &Server{index: newSlaveIndex(), slaves: map[*slaveConn]struct{}{}, slaveRecs: map[string]*slaveRecord{},
		queue: newFairQueue()}
	r.s.log = slog.New(slog.DiscardHandler)
	r.s.cfg.Now = func() time.Time { return r.now }
	r.s.cfg.Budget.Jobs = JobBudget{QuarantineStrikes: 2, QuarantineBase: 30 * time.Second, QuarantineMax: 10 * time.Minute}
	return r
}

// register connects and registers a slave the way slaveMessage does.
func (r *schedRig) register(name string, slots int, sealing, judging bool, tcs ...wire.Toolchain) *slaveConn {
	sc := &slaveConn{peer: &peer{id: auth.Identity{Name: name}, log: slog.New(slog.DiscardHandler)}, running: map[string]*job{},
		reg: wire.Register{Slots: slots, Toolchains: tcs}, langs: map[string]bool{}, registered: true}
	if sealing {
		sc.sealKey = []byte{1}
	}
	if judging {
		sc.hello.Features = []string{wire.FeatureTests}
	}
	for _, t := range tcs {
		sc.langs[t.Language] = true
	}
	r.s.slaves[sc] = struct{}{}
	sc.slot = r.s.index.add(sc.fill(r.s.slaveRecs[name], r.now))
	return sc
}

// drop is dropSlave's part for the scheduler.
func (r *schedRig) drop(sc *slaveConn) {
	delete(r.s.slaves, sc)
	r.s.index.remove(sc.slot)
	sc.slot = nil
	clear(sc.running)
	r.s.reindexLocked(sc)
}

// assign places a job on sc the way placeLocked does.
func (r *schedRig) assign(sc *slaveConn) {
	r.n++
	r.now = r.now.Add(time.Millisecond)
	sc.lastAssigned = r.now
	sc.running[jobIDs[r.n%len(jobIDs)]] = nil
	r.s.reindexLocked(sc)
}

// jobIDs name the rig's jobs, made once so that assign allocates nothing
// the dispatcher would not: a slave runs at most 16 of the last 4,096.
var jobIDs = func() (ids [4096]string) {
	for i := range ids {
		ids[i] = fmt.Sprint("J", i)
	}
	return ids
}()

// finish ends one of sc's jobs the way finishLocked does.
func (r *schedRig) finish(sc *slaveConn) {
	for id := range sc.running {
		delete(sc.running, id)
		break
	}
	r.s.reindexLocked(sc)
}

func (r *schedRig) load(sc *slaveConn, cpu float64, health string) {
	sc.load.CPUPercent, sc.load.Health = cpu, health
	r.s.reindexLocked(sc)
}

// pick asks the index, checks the scan agrees, and returns the name
// picked ("" for none).
func (r *schedRig) pick(sub wire.Submit, avoid string) string {
	r.t.Helper()
	r.s.refreshIndexLocked(r.now)
	r.s.verifyIndexLocked(r.now)
	c := r.s.index.pick(&sub, avoid)
	cs := fitting(candidatesFor(r.s.candidatesLocked(r.now), sub.Sealed), sub)
	k := pickFor(cs, sub.Language, avoid)
	switch {
	case k < 0 && c == nil:
		return ""
	case k < 0 || c == nil:
		r.t.Fatalf("%+v avoiding %q: the scan picks %d, the index %v", sub, avoid, k, c)
	case cs[k].name != c.name:
		r.t.Fatalf("%+v avoiding %q: the scan picks %s (%.3f), the index %s (%.3f)", sub, avoid, cs[k].name, cs[k].score(), c.name, c.score())
	}
	return c.name
}

var py = wire.Submit{Language: "python"}

// TestIndexLoadReportReorders: a load report moves a slave behind
// another at once, without a dispatch rebuilding anything.
func TestIndexLoadReportReorders(t *testing.T) {
	r := newSchedRig(t)
	a := r.register("a", 4, false, false, wire.Toolchain{Language: "python"})
	b := r.register("b", 4, false, false, wire.Toolchain{Language: "python"})
	r.load(a, 5, "")
	r.load(b, 40, "")
	if got := r.pick(py, ""); got != "a" {
		t.Fatalf("picked %q, want the idle slave a", got)
	}
	r.load(a, 90, "")
	if got := r.pick(py, ""); got != "b" {
		t.Fatalf("after a reported 90%% CPU, picked %q, want b", got)
	}
	r.load(b, 0, "no disk")
	if got := r.pick(py, ""); got != "a" {
		t.Fatalf("with b unhealthy, picked %q, want a", got)
	}
	r.load(a, 0, "no disk")
	if got := r.pick(py, ""); got != "" {
		t.Fatalf("with both unhealthy, picked %q", got)
	}
}

// TestIndexSlaveLeaves: a slave that leaves is never picked again, its
// class goes with its last slave, and its jobs' ends do not bring it back.
func TestIndexSlaveLeaves(t *testing.T) {
	r := newSchedRig(t)
	a := r.register("a", 2, false, false, wire.Toolchain{Language: "python"})
	b := r.register("b", 2, false, false, wire.Toolchain{Language: "python", Options: []string{"-O"}})
	r.load(b, 80, "")
	r.assign(a) // a: 0.5, b: 0.8
	if got := r.pick(py, ""); got != "a" {
		t.Fatalf("picked %q, want a", got)
	}
	r.drop(a)
	r.finish(a) // a job of the gone slave ends after it left
	if got := r.pick(py, ""); got != "b" {
		t.Fatalf("after a left, picked %q, want b", got)
	}
	if len(r.s.index.classes) != 1 || len(r.s.index.byLang["python"]) != 1 {
		t.Fatalf("a's class outlived it: %d classes", len(r.s.index.classes))
	}
	r.drop(b)
	if got := r.pick(py, ""); got != "" || len(r.s.index.byLang) != 0 || r.s.index.anyFree() {
		t.Fatalf("with no slave, picked %q, %d languages indexed", got, len(r.s.index.byLang))
	}
}

// TestIndexQuarantineExpires: a quarantined slave is out until its time,
// then back without any event of its own; strikes make it a suspect, a
// good job clean again.
func TestIndexQuarantineExpires(t *testing.T) {
	r := newSchedRig(t)
	a := r.register("a", 4, false, false, wire.Toolchain{Language: "python"})
	b := r.register("b", 4, false, false, wire.Toolchain{Language: "python"})
	r.load(b, 60, "")
	r.s.strikeLocked(a, "first")
	if got := r.pick(py, ""); got != "b" {
		t.Fatalf("with a struck, picked %q, want the clean b", got)
	}
	r.s.strikeLocked(a, "second") // QuarantineStrikes: out for 30 s
	r.load(b, 100, "")
	for range 4 {
		r.assign(b)
	}
	if got := r.pick(py, ""); got != "" {
		t.Fatalf("with a quarantined and b full, picked %q", got)
	}
	r.now = r.now.Add(29 * time.Second)
	if got := r.pick(py, ""); got != "" {
		t.Fatalf("before the quarantine ended, picked %q", got)
	}
	r.now = r.now.Add(time.Second)
	if got := r.pick(py, ""); got != "a" {
		t.Fatalf("once the quarantine ended, picked %q, want a", got)
	}
	for range 4 {
		r.finish(b)
	}
	r.load(b, 0, "")
	if got := r.pick(py, ""); got != "a" {
		t.Fatalf("picked %q, want a (tied with b and idler; its quarantine left it clean)", got)
	}
	r.s.Drain("a", "test", true)
	if got := r.pick(py, ""); got != "b" {
		t.Fatalf("with a drained, picked %q, want b", got)
	}
}

// TestIndexMatchesScan drives random changes of every kind the index
// follows and checks after each that it picks what the scan picks, for
// jobs of every shape: languages, sealed, options, test batches, a slave
// to avoid. Scores sit around scoreEpsilon of each other on purpose.
func TestIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	toolchains := [][]wire.Toolchain{
		{{Language: "python"}},
		{{Language: "python"}, {Language: "c", Options: []string{"-O2"}}},
		{{Language: "c"}},
		{{Language: "c", Options: []string{"-O2", "-lm"}}, {Language: "python"}},
	}
	subs := []wire.Submit{
		{Language: "python"}, {Language: "c"}, {Language: "c", Options: []string{"-O2"}},
		{Language: "c", Options: []string{"-lm"}}, {Language: "python", Sealed: true},
		{Language: "c", Tests: 3}, {Language: "go"},
	}
	r := newSchedRig(t)
	var live []*slaveConn
	names := 0
	for step := range 4000 {
		switch op := rng.IntN(12); {
		case op == 0 || len(live) < 3:
			names++
			sc := r.register(fmt.Sprint("s", names), []int{1, 2, 4, 16}[rng.IntN(4)], rng.IntN(2) == 0, rng.IntN(3) == 0,
				toolchains[rng.IntN(len(toolchains))]...)
			live = append(live, sc)
		case op == 1 && len(live) > 3:
			i := rng.IntN(len(live))
			r.drop(live[i])
			live = append(live[:i], live[i+1:]...)
		case op <= 4:
			if sc := live[rng.IntN(len(live))]; len(sc.running) < sc.reg.Slots {
				r.assign(sc)
			}
		case op <= 6:
			r.finish(live[rng.IntN(len(live))])
		case op == 7:
			health := ""
			if rng.IntN(8) == 0 {
				health = "sick"
			}
			r.load(live[rng.IntN(len(live))], []float64{0, 2, 4.9, 5, 5.1, 7, 10, 50}[rng.IntN(8)], health)
		case op == 8:
			r.s.strikeLocked(live[rng.IntN(len(live))], "test")
		case op == 9:
			sc := live[rng.IntN(len(live))]
			if rec := r.s.slaveRecs[sc.id.Name]; rec != nil {
				rec.good()
				r.s.reindexLocked(sc)
			}
		case op == 10:
			r.s.Drain(live[rng.IntN(len(live))].id.Name, "test", rng.IntN(2) == 0)
		default:
			r.now = r.now.Add(time.Duration(rng.IntN(20)) * time.Second)
		}
		for _, sub := range subs {
			avoid := ""
			if rng.IntN(4) == 0 {
				avoid = live[rng.IntN(len(live))].id.Name
			}
			r.pick(sub, avoid)
		}
		if step%500 == 0 && testing.Verbose() {
			t.Logf("step %d: %d slaves, %d free, %d classes", step, len(live), r.s.index.free, len(r.s.index.classes))
		}
	}
}

// BenchmarkDispatch is the scheduler's work per job at 10, 100 and 1,000
// slaves of 16 slots with about half their slots taken: pick a slave,
// place the job, and end an older job so the load stays level. index is
// the dispatcher's way; scan the candidates rebuilt per dispatch that it
// replaced.
func BenchmarkDispatch(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, way := range []string{"index", "scan"} {
			b.Run(fmt.Sprintf("slaves=%d/%s", n, way), func(b *testing.B) {
				r := newSchedRig(b)
				for i := range n {
					sc := r.register(fmt.Sprint("s", i), 16, true, false, wire.Toolchain{Language: "python"}, wire.Toolchain{Language: "c"})
					r.load(sc, float64(i%7), "")
					for range 8 {
						r.assign(sc)
					}
				}
				var placed []*slaveConn
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					var sc *slaveConn
					if way == "index" {
						sc = r.s.index.pick(&py, "").slave
					} else {
						cs := fitting(candidatesFor(r.s.candidatesLocked(r.now), false), py)
						sc = cs[pickFor(cs, "python", "")].slave
					}
					r.assign(sc)
					placed = append(placed, sc)
					if len(placed) > n {
						r.finish(placed[0])
						placed = placed[1:]
					}
				}
			})
		}
	}
}

// pickJobChecked asks the index for queued job j, checks the scan agrees,
// and returns the name picked ("" for none).
func (r *schedRig) pickJobChecked(j *job) string {
	r.t.Helper()
	r.s.refreshIndexLocked(r.now)
	c := r.s.index.pickJob(j)
	cs := fitting(candidatesFor(r.s.candidatesLocked(r.now), j.submit.Sealed), j.submit)
	k := pickWrapped(cs, j.submit.Language, j.avoid, j.wrappedFor)
	switch {
	case k < 0 && c == nil:
		return ""
	case k < 0 || c == nil:
		r.t.Fatalf("job %+v: the scan picks %d, the index %v", j.submit, k, c)
	case cs[k].name != c.name:
		r.t.Fatalf("job %+v: the scan picks %s (%.3f), the index %s (%.3f)", j.submit, cs[k].name, cs[k].score(), c.name, c.score())
	}
	return c.name
}

// TestIndexPrefersWrappedSlave: among slaves that tie for the lowest
// score, a sealed job goes to one its client wrapped its key for (no
// WrapRequest round trip), never to a busier one for that, and only to
// a slave that can take the Submit's wraps.
func TestIndexPrefersWrappedSlave(t *testing.T) {
	r := newSchedRig(t)
	sl := map[string]*slaveConn{}
	for _, n := range []string{"a", "b", "c", "old"} {
		sl[n] = r.register(n, 4, true, false, wire.Toolchain{Language: "python"})
		if n != "old" {
			sl[n].hello.Features = append(sl[n].hello.Features, wire.FeatureSubmitWraps)
		}
	}
	wrapsFor := func(names ...string) *job {
		j := &job{submit: wire.Submit{Language: "python", Sealed: true, WrapNonce: make([]byte, wire.WrapNonceSize)}}
		for _, n := range names {
			j.submit.Wraps = append(j.submit.Wraps, wire.KeyWrap{Slave: n, Key: []byte{1}})
		}
		return j
	}
	if got := r.pickJobChecked(wrapsFor()); got != "a" {
		t.Fatalf("no wraps: %q, want a (idle alike, first by name)", got)
	}
	if got := r.pickJobChecked(wrapsFor("c")); got != "c" {
		t.Fatalf("wrapped for c: %q, want c", got)
	}
	if got := r.pickJobChecked(wrapsFor("old")); got != "a" {
		t.Fatalf("wrapped only for a slave without submit-wraps: %q, want a", got)
	}
	after := wrapsFor()
	after.wraps = map[string][]byte{"old": {1}} // wrapped after Accepted: any slave can use it
	if got := r.pickJobChecked(after); got != "old" {
		t.Fatalf("wrapped for old after Accepted: %q, want old", got)
	}
	r.load(sl["c"], 3, "") // within scoreEpsilon: still a tie
	if got := r.pickJobChecked(wrapsFor("c")); got != "c" {
		t.Fatalf("c 3 %% busier: %q, want c", got)
	}
	r.load(sl["c"], 20, "") // past it: the wrap does not buy a busier slave
	if got := r.pickJobChecked(wrapsFor("c")); got != "a" {
		t.Fatalf("c 20 %% busier: %q, want a", got)
	}
	j := wrapsFor("b", "c")
	j.avoid = "b"
	if got := r.pickJobChecked(j); got != "a" {
		t.Fatalf("wrapped for b and c, avoiding b, c busy: %q, want a", got)
	}
	r.load(sl["c"], 0, "")
	if got := r.pickJobChecked(j); got != "c" {
		t.Fatalf("wrapped for b and c, avoiding b: %q, want c", got)
	}
	// Random loads and assignments: the index and the scan agree.
	rng := rand.New(rand.NewPCG(7, 15))
	names := []string{"a", "b", "c", "old", "gone"}
	for i := range 2000 {
		sc := sl[names[rng.IntN(4)]]
		switch rng.IntN(3) {
		case 0:
			r.load(sc, float64(rng.IntN(12)), "")
		case 1:
			if len(sc.running) < sc.reg.Slots {
				r.assign(sc)
			}
		default:
			r.finish(sc)
		}
		var w []string
		for _, n := range names {
			if rng.IntN(3) == 0 {
				w = append(w, n)
			}
		}
		j := wrapsFor(w...)
		if i%5 == 0 {
			j.avoid = names[rng.IntN(4)]
		}
		r.pickJobChecked(j)
	}
}

// TestPickJobAllocatesNothing: placing a sealed job whose key is wrapped
// for some slaves allocates nothing, as a plain pick does.
func TestPickJobAllocatesNothing(t *testing.T) {
	r := newSchedRig(t)
	for _, n := range []string{"a", "b", "c"} {
		sc := r.register(n, 4, true, false, wire.Toolchain{Language: "python"})
		sc.hello.Features = append(sc.hello.Features, wire.FeatureSubmitWraps)
	}
	j := &job{submit: wire.Submit{Language: "python", Sealed: true, WrapNonce: make([]byte, wire.WrapNonceSize),
		Wraps: []wire.KeyWrap{{Slave: "c", Key: []byte{1}}, {Slave: "b", Key: []byte{1}}}}}
	r.s.refreshIndexLocked(r.now)
	var got *candidate
	if n := testing.AllocsPerRun(100, func() { got = r.s.index.pickJob(j) }); n != 0 || got == nil || got.name != "b" {
		t.Fatalf("pickJob: %v allocations, picked %v; want 0 and b (wrapped, first by name)", n, got)
	}
}
