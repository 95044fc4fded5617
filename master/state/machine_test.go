package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/goleak"

	"kiln/master/state"
	"kiln/transport/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)

func submit(owner string, src string) *state.Command {
	return &state.Command{Kind: state.KindSubmit, Now: t0, New: &state.Job{
		Owner: owner, Name: "name-" + owner, Source: []byte(src),
		Submit: wire.Submit{Language: "python", FileName: "a.py", SourceSize: int64(len(src))},
	}}
}

func result(id string, attempt int, status string, out string) *state.Command {
	return &state.Command{Kind: state.KindResult, Now: t0.Add(time.Second), Job: id, Attempt: attempt,
		Result: &wire.Result{JobID: id, Attempt: attempt, Status: status},
		Output: []state.Chunk{{Stream: 1, Seq: 0, Data: []byte(out)}}}
}

func cmd(k state.Kind, id string, attempt int) *state.Command {
	return &state.Command{Kind: k, Now: t0, Job: id, Attempt: attempt, Slave: "s1"}
}

func mustApply(t *testing.T, m *state.Machine, c *state.Command) *state.Job {
	t.Helper()
	r := m.Apply(c)
	if r.Err != nil {
		t.Fatalf("%s %s: %v", c.Kind, c.Job, r.Err)
	}
	return r.Job
}

func wantErr(t *testing.T, m *state.Machine, c *state.Command, want error) {
	t.Helper()
	if r := m.Apply(c); !errors.Is(r.Err, want) {
		t.Fatalf("%s %s attempt %d: err %v, want %v", c.Kind, c.Job, c.Attempt, r.Err, want)
	}
}

func TestApplyLifecycle(t *testing.T) {
	m := state.NewMachine()
	j := mustApply(t, m, submit("alice", "print(1)"))
	if j.ID != "J1" || j.State != state.Queued || j.Attempt != 1 || !j.Created.Equal(t0) {
		t.Fatalf("submitted %+v", j)
	}
	mustApply(t, m, submit("bob", "print(2)"))
	wantErr(t, m, cmd(state.KindAssign, "J1", 2), state.ErrStale)
	if j := mustApply(t, m, cmd(state.KindAssign, "J1", 1)); j.State != state.Assigned || j.Slave != "s1" {
		t.Fatalf("assigned %+v", j)
	}
	wantErr(t, m, cmd(state.KindAssign, "J1", 1), state.ErrStale)
	if j := mustApply(t, m, cmd(state.KindRequeue, "J1", 1)); j.State != state.Queued || j.Attempt != 2 || j.Slave != "" {
		t.Fatalf("requeued %+v", j)
	}
	mustApply(t, m, cmd(state.KindAssign, "J1", 2))
	wantErr(t, m, result("J1", 1, wire.StatusOK, "late"), state.ErrStale)
	wantErr(t, m, cmd(state.KindDeliver, "J1", 0), state.ErrStale)
	j = mustApply(t, m, result("J1", 2, wire.StatusOK, "1\n"))
	if j.State != state.Done || string(j.Output[0].Data) != "1\n" || j.Result.Attempt != 2 {
		t.Fatalf("result %+v", j)
	}
	wantErr(t, m, result("J1", 2, wire.StatusOK, "again"), state.ErrEnded)
	wantErr(t, m, cmd(state.KindCancel, "J1", 0), state.ErrEnded)
	if j := mustApply(t, m, cmd(state.KindDeliver, "J1", 0)); !j.Delivered {
		t.Fatal("not delivered")
	}
	wantErr(t, m, cmd(state.KindAssign, "J9", 1), state.ErrNotFound)
	if got := m.Jobs("alice"); len(got) != 1 || got[0].ID != "J1" {
		t.Fatalf("alice's jobs %v", got)
	}
	if got := m.Jobs(""); len(got) != 2 {
		t.Fatalf("all jobs %v", got)
	}
	if got := m.Unfinished(); len(got) != 1 || got[0].ID != "J2" {
		t.Fatalf("unfinished %v", got)
	}
	// The record handed out earlier is unchanged by later commands.
	if j, _ := m.Job("J2"); j.State != state.Queued {
		t.Fatalf("J2 %+v", j)
	}
}

func TestApplyFailedResultAndCancel(t *testing.T) {
	m := state.NewMachine()
	mustApply(t, m, submit("a", "x"))
	mustApply(t, m, submit("a", "y"))
	if j := mustApply(t, m, result("J1", 1, wire.StatusRuntimeError, "")); j.State != state.Failed {
		t.Fatalf("failed result gave %s", j.State)
	}
	mustApply(t, m, submit("a", "z"))
	c := cmd(state.KindCancel, "J2", 0)
	c.Reason = "cancelled by its client"
	j := mustApply(t, m, c)
	if j.State != state.Failed || j.Result.Status != wire.StatusCancelled || j.Result.Detail != c.Reason {
		t.Fatalf("cancelled queued job %+v %+v", j, j.Result)
	}
	mustApply(t, m, cmd(state.KindAssign, "J3", 1))
	if j := mustApply(t, m, cmd(state.KindCancel, "J3", 0)); j.State != state.Assigned || !j.CancelRequested {
		t.Fatalf("cancelled assigned job %+v", j)
	}
}

func TestSubmitCaps(t *testing.T) {
	m := state.NewMachine()
	c := submit("a", "0123456789")
	c.MaxJobs = 2
	mustApply(t, m, c)
	mustApply(t, m, c)
	wantErr(t, m, c, state.ErrQueueFull)
	mustApply(t, m, result("J1", 1, wire.StatusOK, "0123456789"))
	mustApply(t, m, c) // J3: room again

	// Byte cap: J1 (ended, 20 bytes) is dropped to make room; J2 and J3
	// are unfinished and stay, so a job that does not fit then is refused.
	c = submit("a", "0123456789")
	c.MaxBytes = 30
	if j := mustApply(t, m, c); j.ID != "J4" {
		t.Fatalf("got %s", j.ID)
	}
	if _, ok := m.Job("J1"); ok {
		t.Fatal("J1 not evicted")
	}
	wantErr(t, m, c, state.ErrFull)
	if st := m.Stats(); st.Seq != 4 || st.Bytes != 30 || st.Unfinished != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestEvictLargestHolderFirst: key A fills the size cap with finished
// results; key B's one finished, uncollected result survives A's next
// submits and the periodic expiry, and A loses its own oldest first. The
// same commands on a restored snapshot evict the same jobs.
func TestEvictLargestHolderFirst(t *testing.T) {
	const capBytes = 1000
	run := func(m *state.Machine, c *state.Command) *state.Job {
		c.MaxBytes = capBytes
		return mustApply(t, m, c)
	}
	m := state.NewMachine()
	b := run(m, submit("bob", "b"))
	mustApply(t, m, result(b.ID, 1, wire.StatusOK, "bob's result"))
	var aIDs []string
	for i := 0; i < 30; i++ { // 30 × (1 + 99) bytes: 3 times the cap
		j := run(m, submit("alice", "a"))
		mustApply(t, m, result(j.ID, 1, wire.StatusOK, string(bytes.Repeat([]byte("x"), 99))))
		aIDs = append(aIDs, j.ID)
		if _, ok := m.Job(b.ID); !ok {
			t.Fatalf("bob's result evicted after alice's job %d", i+1)
		}
	}
	mustApply(t, m, &state.Command{Kind: state.KindExpire, Now: t0, Retention: 24 * time.Hour, MaxBytes: capBytes})
	if _, ok := m.Job(b.ID); !ok {
		t.Fatal("bob's result evicted by expiry")
	}
	if st := m.Stats(); st.Bytes > capBytes {
		t.Fatalf("state holds %d bytes, cap %d", st.Bytes, capBytes)
	}
	// Alice's oldest went first: what is left of hers is her newest.
	var kept []string
	for _, j := range m.Jobs("alice") {
		kept = append(kept, j.ID)
	}
	if len(kept) == 0 || fmt.Sprint(kept) != fmt.Sprint(aIDs[len(aIDs)-len(kept):]) {
		t.Fatalf("alice kept %v of %v", kept, aIDs)
	}
	// Restored from a snapshot, the holdings evict the same way.
	var buf bytes.Buffer
	if _, err := m.Image().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := state.NewMachine()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	for _, mm := range []*state.Machine{m, r} {
		j := run(mm, submit("carol", string(bytes.Repeat([]byte("c"), 300))))
		if _, ok := mm.Job(b.ID); !ok || j.ID != fmt.Sprintf("J%d", len(aIDs)+2) {
			t.Fatalf("after carol's submit: bob's result gone or id %s", j.ID)
		}
	}
	if a, b := fmt.Sprint(ids(m)), fmt.Sprint(ids(r)); a != b {
		t.Fatalf("live %s, restored %s", a, b)
	}
	// With only bob's result left to take, it goes: the cap holds.
	big := submit("carol", string(bytes.Repeat([]byte("c"), capBytes-299)))
	big.MaxBytes = capBytes
	wantErr(t, m, big, state.ErrFull)
	if _, ok := m.Job(b.ID); ok {
		t.Fatal("bob's result kept past the cap")
	}
}

func ids(m *state.Machine) (s []string) {
	for _, j := range m.Jobs("") {
		s = append(s, j.ID)
	}
	return s
}

func TestExpire(t *testing.T) {
	m := state.NewMachine()
	for i := 0; i < 4; i++ {
		mustApply(t, m, submit("a", "x"))
	}
	for i, id := range []string{"J1", "J2", "J3"} {
		r := result(id, 1, wire.StatusOK, "out")
		r.Now = t0.Add(time.Duration(i) * time.Hour)
		mustApply(t, m, r)
	}
	mustApply(t, m, &state.Command{Kind: state.KindExpire, Now: t0.Add(25 * time.Hour), Retention: 24 * time.Hour})
	ids := func() (s []string) {
		for _, j := range m.Jobs("") {
			s = append(s, j.ID)
		}
		return s
	}
	if got := fmt.Sprint(ids()); got != "[J2 J3 J4]" {
		t.Fatalf("after retention: %s", got)
	}
	mustApply(t, m, &state.Command{Kind: state.KindExpire, Now: t0.Add(25 * time.Hour), Retention: 24 * time.Hour, MaxBytes: 1})
	if got := fmt.Sprint(ids()); got != "[J4]" {
		t.Fatalf("after size cap: %s (the unfinished J4 must stay)", got)
	}
	if j := mustApply(t, m, submit("a", "x")); j.ID != "J5" {
		t.Fatalf("id after expiry %s, want J5 (ids never reused)", j.ID)
	}
}

func TestWraps(t *testing.T) {
	m := state.NewMachine()
	mustApply(t, m, submit("a", "plain"))
	c := submit("a", "sealed")
	c.New.Submit.Sealed = true
	mustApply(t, m, c)
	w := &state.Command{Kind: state.KindWraps, Job: "J2", Wraps: []state.Wrap{{Slave: "s1", Key: []byte("k1")}}}
	if j := mustApply(t, m, w); len(j.Wraps) != 1 || j.Wraps[0].Slave != "s1" {
		t.Fatalf("wraps %+v", j.Wraps)
	}
	w2 := &state.Command{Kind: state.KindWraps, Job: "J2", Wraps: []state.Wrap{{Slave: "s2", Key: []byte("k2")}}}
	wantErr(t, m, w2, state.ErrStale) // wraps already stored
	if j, _ := m.Job("J2"); len(j.Wraps) != 1 || j.Wraps[0].Slave != "s1" {
		t.Fatalf("wraps after a second Wraps %+v", j.Wraps)
	}
	w.Job = "J1"
	wantErr(t, m, w, state.ErrStale) // not a sealed job
	if st := m.Stats(); st.Bytes != int64(len("plain")+len("sealed")+2) {
		t.Fatalf("bytes %d", st.Bytes)
	}
}

func TestDrainQuarantine(t *testing.T) {
	m := state.NewMachine()
	mustApply(t, m, &state.Command{Kind: state.KindDrain, Slave: "s1"})
	mustApply(t, m, &state.Command{Kind: state.KindQuarantine, Slave: "s2", Until: t0.Add(time.Minute)})
	mustApply(t, m, &state.Command{Kind: state.KindQuarantine, Slave: "s2", Until: t0.Add(2 * time.Minute)})
	got := m.Slaves()
	if len(got) != 2 || !got[0].Drained || got[1].Strikes != 2 || !got[1].QuarantinedUntil.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("slaves %+v", got)
	}
	mustApply(t, m, &state.Command{Kind: state.KindUndrain, Slave: "s1"})
	if got := m.Slaves(); len(got) != 1 || got[0].Name != "s2" {
		t.Fatalf("after undrain %+v", got)
	}
}

// randomCommands is a reproducible mix of every kind of command, valid
// and stale.
func randomCommands(seed uint64, n int) []*state.Command {
	r := rand.New(rand.NewPCG(seed, 1))
	var out []*state.Command
	submitted := 0
	for i := 0; i < n; i++ {
		now := t0.Add(time.Duration(i) * time.Minute)
		id := fmt.Sprintf("J%d", 1+r.IntN(submitted+1))
		var c *state.Command
		switch k := r.IntN(10); {
		case k < 3 || submitted == 0:
			c = submit(fmt.Sprintf("owner%d", r.IntN(3)), fmt.Sprintf("src %d", i))
			c.MaxJobs, c.MaxBytes = 50, 2000
			submitted++
		case k == 3:
			c = cmd(state.KindAssign, id, 1+r.IntN(2))
		case k == 4:
			c = result(id, 1+r.IntN(2), []string{wire.StatusOK, wire.StatusRuntimeError}[r.IntN(2)], fmt.Sprint(i))
		case k == 5:
			c = cmd(state.KindRequeue, id, 1+r.IntN(2))
		case k == 6:
			c = cmd(state.KindCancel, id, 0)
		case k == 7:
			c = cmd(state.KindDeliver, id, 0)
		case k == 8:
			c = &state.Command{Kind: []state.Kind{state.KindDrain, state.KindUndrain, state.KindQuarantine}[r.IntN(3)],
				Slave: fmt.Sprintf("s%d", r.IntN(3)), Until: now.Add(time.Hour)}
		default:
			c = &state.Command{Kind: state.KindExpire, Retention: 3 * time.Hour, MaxBytes: 1500}
		}
		c.Now = now
		out = append(out, c)
	}
	return out
}

func image(t *testing.T, m *state.Machine) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := m.Image().WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestApplyDeterministic feeds the same commands (through their encoded
// log form) to two machines, and to a third restored from a snapshot
// taken half way: all three end with the same snapshot bytes and answer
// every command the same way.
func TestApplyDeterministic(t *testing.T) {
	cmds := randomCommands(7, 600)
	a, b, c := state.NewMachine(), state.NewMachine(), state.NewMachine()
	for i, cm := range cmds {
		enc, err := cm.Encode()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := state.DecodeCommand(enc)
		if err != nil {
			t.Fatal(err)
		}
		ra, rb := a.Apply(cm), b.Apply(dec)
		if fmt.Sprint(ra.Err) != fmt.Sprint(rb.Err) {
			t.Fatalf("command %d: %v vs %v", i, ra.Err, rb.Err)
		}
		if i == len(cmds)/2 {
			if err := c.Restore(bytes.NewReader(image(t, a))); err != nil {
				t.Fatal(err)
			}
		}
		if i > len(cmds)/2 {
			if rc := c.Apply(cm); fmt.Sprint(ra.Err) != fmt.Sprint(rc.Err) {
				t.Fatalf("restored, command %d: %v vs %v", i, ra.Err, rc.Err)
			}
		}
	}
	ia, ib, ic := image(t, a), image(t, b), image(t, c)
	if !bytes.Equal(ia, ib) || !bytes.Equal(ia, ic) {
		t.Fatalf("snapshots differ: %d, %d, %d bytes", len(ia), len(ib), len(ic))
	}
	if a.Stats() != c.Stats() || a.Stats().Seq == 0 || a.Stats().Jobs == 0 {
		t.Fatalf("stats %+v vs restored %+v", a.Stats(), c.Stats())
	}
}

func TestRestoreRefusesBadSnapshot(t *testing.T) {
	m := state.NewMachine()
	for _, c := range randomCommands(3, 100) {
		m.Apply(c)
	}
	good := image(t, m)
	n := state.NewMachine()
	n.Apply(submit("x", "keep me"))
	before := image(t, n)
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)*2/3],
		"empty":     nil,
		"garbage":   bytes.Repeat([]byte{0xc1}, 100),
	} {
		if err := n.Restore(bytes.NewReader(b)); !errors.Is(err, state.ErrBadSnapshot) {
			t.Errorf("%s: err %v, want ErrBadSnapshot", name, err)
		}
		if !bytes.Equal(image(t, n), before) {
			t.Errorf("%s: a refused restore changed the state", name)
		}
	}
	if err := state.NewMachine().Restore(bytes.NewReader(rewriteEnds(t, good, false))); err != nil {
		t.Fatalf("the rewritten image without duplicates: %v", err)
	}
	if b := rewriteEnds(t, good, true); true {
		if err := n.Restore(bytes.NewReader(b)); !errors.Is(err, state.ErrBadSnapshot) || !strings.Contains(err.Error(), "both ended at") {
			t.Errorf("two jobs with one end number: err %v, want ErrBadSnapshot naming them", err)
		}
		if !bytes.Equal(image(t, n), before) {
			t.Errorf("duplicate end numbers: a refused restore changed the state")
		}
	}
	if _, err := state.DecodeCommand([]byte{0x81, 0xa4, 'k', 'i', 'n', 'd', 0x63}); !errors.Is(err, state.ErrBadCommand) {
		t.Errorf("unknown kind: %v", err)
	}
}

// rewriteEnds decodes a snapshot image and encodes it again; with dup,
// its last two ended jobs carry the same end number, everything else
// (counters included) still valid.
func rewriteEnds(t *testing.T, img []byte, dup bool) []byte {
	t.Helper()
	dec := msgpack.NewDecoder(bytes.NewReader(img))
	var hdr map[string]any
	if err := dec.Decode(&hdr); err != nil {
		t.Fatal(err)
	}
	var jobs []map[string]any
	for {
		var j map[string]any
		if err := dec.Decode(&j); err != nil {
			break
		}
		jobs = append(jobs, j)
	}
	var ended []map[string]any
	for _, j := range jobs {
		if _, ok := j["end_seq"]; ok {
			ended = append(ended, j)
		}
	}
	if len(ended) < 2 {
		t.Fatalf("the image has %d ended jobs, want 2 or more", len(ended))
	}
	if dup {
		ended[len(ended)-1]["end_seq"] = ended[len(ended)-2]["end_seq"]
	}
	var out bytes.Buffer
	enc := msgpack.NewEncoder(&out)
	if err := enc.Encode(hdr); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if err := enc.Encode(j); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}
