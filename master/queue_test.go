package master

import (
	"fmt"
	"testing"
)

// TestFairQueueRoundRobin: owners are served one job each in turn, least
// recently served first; a newcomer goes before owners already served.
func TestFairQueueRoundRobin(t *testing.T) {
	q := newFairQueue()
	var jobs []*job
	for i := range 4 {
		j := &job{id: fmt.Sprintf("a%d", i), owner: "a"}
		jobs = append(jobs, j)
		q.push(j)
	}
	b := &job{id: "b0", owner: "b"}
	q.push(b)
	if got := q.position(b); got != 2 {
		t.Fatalf("b's position %d, want 2", got)
	}
	var order []string
	takeOne := func(js []*job) int { order = append(order, js[0].id); return 0 }
	q.round(func(js []*job) int { return takeOne(js) })
	if fmt.Sprint(order) != "[a0 b0]" {
		t.Fatalf("first round %v", order)
	}
	c := &job{id: "c0", owner: "c"}
	q.push(c)
	order = nil
	if !q.round(takeOne) || fmt.Sprint(order) != "[c0 a1]" {
		t.Fatalf("second round %v: the newcomer goes first", order)
	}
	if q.len() != 2 || !q.remove(jobs[3]) || q.remove(jobs[3]) || q.len() != 1 {
		t.Fatalf("remove: len %d", q.len())
	}
	if q.round(func([]*job) int { return -1 }) {
		t.Fatal("a round that placed nothing says it did")
	}
}
