package master

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
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

// TestFairQueueOrderKept: the serving order the queue keeps as it
// changes is the one sorting the waiting owners by last service (ties
// in arrival order) would give, through random pushes, removals and
// rounds that place some jobs and not others.
func TestFairQueueOrderKept(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	q := newFairQueue()
	var arrival []string // owners waiting, in arrival order: the model
	var queued []*job
	for step := range 5000 {
		owner := fmt.Sprint("k", rng.IntN(8))
		switch op := rng.IntN(6); {
		case op <= 1:
			if _, ok := q.byOwner[owner]; !ok {
				arrival = append(arrival, owner)
			}
			j := &job{id: fmt.Sprint("j", step), owner: owner}
			if op == 0 {
				q.push(j)
			} else {
				q.pushFront(j)
			}
			queued = append(queued, j)
		case op == 2 && len(queued) > 0:
			i := rng.IntN(len(queued))
			if !q.remove(queued[i]) {
				t.Fatalf("step %d: a queued job was not found", step)
			}
			queued = slices.Delete(queued, i, i+1)
		default:
			q.round(func(js []*job) int {
				if rng.IntN(3) == 0 {
					return -1
				}
				i := rng.IntN(len(js))
				queued = slices.DeleteFunc(queued, func(j *job) bool { return j == js[i] })
				return i
			})
		}
		arrival = slices.DeleteFunc(arrival, func(o string) bool { _, ok := q.byOwner[o]; return !ok })
		want := slices.Clone(arrival)
		slices.SortStableFunc(want, func(a, b string) int { return cmp.Compare(q.served[a], q.served[b]) })
		if !slices.Equal(q.order(), want) || q.len() != len(queued) {
			t.Fatalf("step %d: order %v, want %v; %d queued, want %d", step, q.order(), want, q.len(), len(queued))
		}
	}
}
