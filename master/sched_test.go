package master

import (
	"fmt"
	"testing"
	"time"
)

func cand(name string, cpu float64, inFlight, slots int, langs ...string) *candidate {
	c := &candidate{name: name, cpuPercent: cpu, inFlight: inFlight, slots: slots, languages: map[string]bool{}}
	for _, l := range langs {
		c.languages[l] = true
	}
	return c
}

func TestPickLeastLoaded(t *testing.T) {
	cands := []*candidate{
		cand("busy", 90, 0, 4, "c", "python"),
		cand("idle", 5, 0, 4, "c", "python"),
		cand("mid", 50, 0, 4, "c", "python"),
	}
	if got := pick(cands, "python"); cands[got].name != "idle" {
		t.Fatalf("picked %s, want idle", cands[got].name)
	}
}

func TestPickCapability(t *testing.T) {
	cands := []*candidate{
		cand("c-only", 0, 0, 4, "c"),
		cand("java", 80, 0, 4, "java"),
	}
	if got := pick(cands, "java"); cands[got].name != "java" {
		t.Fatalf("picked %s, want java", cands[got].name)
	}
	if got := pick(cands, "python"); got != -1 {
		t.Fatalf("picked %d for a language nobody runs", got)
	}
	if supports(cands, "python", "") || !supports(cands, "c", "") {
		t.Fatal("supports is wrong")
	}
}

func TestPickSkipsFullAndDrained(t *testing.T) {
	full := cand("full", 0, 2, 2, "c")
	drained := cand("drained", 0, 0, 2, "c")
	drained.drained = true
	loaded := cand("loaded", 99, 1, 2, "c")
	cands := []*candidate{full, drained, loaded}
	if got := pick(cands, "c"); cands[got].name != "loaded" {
		t.Fatalf("picked %s, want loaded", cands[got].name)
	}
	loaded.inFlight = 2
	if got := pick(cands, "c"); got != -1 {
		t.Fatalf("picked %s with every slot taken", cands[got].name)
	}
}

// TestBurstSpreads places a burst of jobs with stale load reports (nobody
// reports again during the burst): the slave whose last report was lowest
// must not get them all.
func TestBurstSpreads(t *testing.T) {
	a := cand("a", 1, 0, 4, "python")
	b := cand("b", 20, 0, 4, "python")
	cands := []*candidate{a, b}
	now := time.Unix(0, 0)
	counts := map[string]int{}
	for i := 0; i < 8; i++ {
		got := pick(cands, "python")
		if got < 0 {
			t.Fatalf("job %d: no slave picked with %d free slots", i, 8-i)
		}
		c := cands[got]
		c.inFlight++
		now = now.Add(time.Millisecond)
		c.lastAssigned = now
		counts[c.name]++
	}
	if counts["a"] != 4 || counts["b"] != 4 {
		t.Fatalf("burst of 8 over two 4-slot slaves spread as %v", counts)
	}
}

func TestTiesAreFair(t *testing.T) {
	var cands []*candidate
	for i := 0; i < 3; i++ {
		cands = append(cands, cand(fmt.Sprint("s", i), 10, 0, 100, "c"))
	}
	counts := map[string]int{}
	now := time.Unix(0, 0)
	for i := 0; i < 30; i++ {
		c := cands[pick(cands, "c")]
		now = now.Add(time.Millisecond)
		c.lastAssigned = now
		counts[c.name]++
		c.inFlight++ // finished instantly in effect: keep scores tied
		c.inFlight--
	}
	for name, n := range counts {
		if n != 10 {
			t.Fatalf("tied slaves got %v jobs (%s: %d), want 10 each", counts, name, n)
		}
	}
}

// TestPickAvoidsSuspects: a slave struck since its last good job gets a
// job only when no clean slave has room, however idle it claims to be;
// and a job never goes back to the slave it must avoid.
func TestPickAvoidsSuspects(t *testing.T) {
	langs := map[string]bool{"python": true}
	cands := []*candidate{
		{name: "liar", languages: langs, slots: 1024, suspect: true},
		{name: "busy", languages: langs, slots: 2, inFlight: 1, cpuPercent: 90},
	}
	if got := pick(cands, "python"); cands[got].name != "busy" {
		t.Fatalf("picked %s, want the clean slave", cands[got].name)
	}
	cands[1].inFlight = 2
	if got := pick(cands, "python"); cands[got].name != "liar" {
		t.Fatalf("picked %v, want the suspect when no clean slave is free", got)
	}
	if got := pickFor(cands, "python", "liar"); got != -1 {
		t.Fatalf("pickFor avoiding the only free slave gave %d", got)
	}
}
