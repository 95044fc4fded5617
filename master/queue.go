package master

import "slices"

// fairQueue holds the jobs waiting for a slot, one FIFO per owner (a
// client key: every session of one key shares it), served round robin: a
// client that queued a thousand jobs gets one slot in turn with a client
// that queued one, instead of every slot before it. Owners are served
// least recently served first, so a client that just got a slot goes
// after every other waiting client, and one that arrives goes first. It
// is guarded by Server.mu.
//
// The serving order is kept as the queue changes, not sorted for each
// round: an owner served goes to the back, one that arrives goes in by
// its last service time.
type fairQueue struct {
	byOwner map[string][]*job
	ring    []string          // owners with queued jobs, in serving order (see order)
	served  map[string]uint64 // when each owner last got a slot (a count of slots given)
	clock   uint64
	n       int
	round0  []string // scratch: the order a round walks
}

func newFairQueue() *fairQueue {
	return &fairQueue{byOwner: map[string][]*job{}, served: map[string]uint64{}}
}

// len is the number of queued jobs.
func (q *fairQueue) len() int { return q.n }

// push queues j at the tail of its owner's queue.
func (q *fairQueue) push(j *job) {
	q.add(j.owner)
	q.byOwner[j.owner] = append(q.byOwner[j.owner], j)
	q.n++
}

// pushFront queues j at the head of its owner's queue (a job that lost its
// slave runs before its owner's later jobs).
func (q *fairQueue) pushFront(j *job) {
	q.add(j.owner)
	q.byOwner[j.owner] = slices.Insert(q.byOwner[j.owner], 0, j)
	q.n++
}

// add puts a newly waiting owner in the serving order: after every owner
// served before it (or never), before every owner served since.
func (q *fairQueue) add(owner string) {
	if _, ok := q.byOwner[owner]; !ok {
		q.byOwner[owner] = nil
		mine := q.served[owner]
		i, _ := slices.BinarySearchFunc(q.ring, mine, func(o string, t uint64) int {
			if q.served[o] <= t {
				return -1
			}
			return 1
		})
		q.ring = slices.Insert(q.ring, i, owner)
	}
}

// remove takes j out of the queue; it reports whether j was queued.
func (q *fairQueue) remove(j *job) bool {
	js := q.byOwner[j.owner]
	i := slices.Index(js, j)
	if i < 0 {
		return false
	}
	q.byOwner[j.owner] = slices.Delete(js, i, i+1)
	q.n--
	if len(q.byOwner[j.owner]) == 0 {
		q.drop(j.owner)
	}
	return true
}

// drop forgets an owner whose queue is empty. Its last service time is
// kept (one number per client key), so that emptying its queue does not
// put it first again.
func (q *fairQueue) drop(owner string) {
	delete(q.byOwner, owner)
	i := slices.Index(q.ring, owner)
	q.ring = slices.Delete(q.ring, i, i+1)
}

// all returns every queued job, owners in serving order.
func (q *fairQueue) all() []*job {
	out := make([]*job, 0, q.n)
	for _, o := range q.order() {
		out = append(out, q.byOwner[o]...)
	}
	return out
}

// order returns the owners with queued jobs, least recently served first
// (ties, owners never served, in arrival order). The slice is the queue's
// own: callers only read it.
func (q *fairQueue) order() []string { return q.ring }

// position is j's place in the order jobs would be served if every slot
// were free: 1 for the next one. Each owner ahead of j's in the round
// serves one job more than each owner after it.
func (q *fairQueue) position(j *job) int {
	mine := slices.Index(q.byOwner[j.owner], j)
	if mine < 0 {
		return 0
	}
	pos, after := 0, false
	for _, o := range q.order() {
		n := len(q.byOwner[o])
		switch {
		case o == j.owner:
			pos += mine + 1
			after = true
		case after:
			pos += min(n, mine)
		default:
			pos += min(n, mine+1)
		}
	}
	return pos
}

// round serves the owners once each, least recently served first: take
// is called with each owner's queued jobs, oldest first, and returns the
// index of the job it placed, or -1 when none of them can be placed now.
// round reports whether any job was placed.
func (q *fairQueue) round(take func(js []*job) int) bool {
	start := q.clock
	walk := append(q.round0[:0], q.ring...)
	for _, o := range walk {
		js := q.byOwner[o]
		i := take(js)
		if i < 0 {
			continue
		}
		q.clock++
		q.served[o] = q.clock
		q.byOwner[o] = slices.Delete(js, i, i+1)
		q.n--
		if len(q.byOwner[o]) == 0 {
			q.drop(o)
		}
	}
	if q.clock > start {
		// The owners served this round go to the back, in the order
		// they were served; the others keep theirs.
		back := walk[:0]
		kept := q.ring[:0]
		for _, o := range q.ring {
			if q.served[o] > start {
				back = append(back, o)
			} else {
				kept = append(kept, o)
			}
		}
		q.ring = append(kept, back...)
	}
	q.round0 = walk[:0]
	return q.clock > start
}
