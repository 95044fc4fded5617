package master

// treap is a set of free slaves ordered by score (then time of their last
// assignment, name and slot number: a total order), balanced by fixed
// random priorities. Each node knows the slave idle longest in its
// subtree, so that [treap.idlest] answers "idle longest among the slaves
// whose score ties the lowest" in O(log n). The zero value is empty.
type treap struct{ root *tnode }

// tnode is one slave in a treap; it lives in the slave's slot, and its
// key fields change only while it is out of the treap.
type tnode struct {
	sl    *slot
	score float64
	last  int64 // the slave's last assignment (see stamp)
	name  string
	seq   uint64 // the slot's number: unique
	prio  uint64
	l, r  *tnode
	best  *tnode // the idlest node of this subtree (see idler)
}

// less is the treap's order.
func less(a, b *tnode) bool {
	switch {
	case a.score != b.score:
		return a.score < b.score
	case a.last != b.last:
		return a.last < b.last
	case a.name != b.name:
		return a.name < b.name
	}
	return a.seq < b.seq
}

// idler reports whether a waited longer than b since its last job: the
// tie-break of [better].
func idler(a, b *tnode) bool {
	switch {
	case a.last != b.last:
		return a.last < b.last
	case a.name != b.name:
		return a.name < b.name
	}
	return a.seq < b.seq
}

func (n *tnode) fix() {
	n.best = n
	if n.l != nil && idler(n.l.best, n.best) {
		n.best = n.l.best
	}
	if n.r != nil && idler(n.r.best, n.best) {
		n.best = n.r.best
	}
}

// insert adds n, which is in no treap.
func (t *treap) insert(n *tnode) {
	n.l, n.r = nil, nil
	n.fix()
	a, b := split(t.root, n)
	t.root = merge(merge(a, n), b)
}

// erase takes n, which is in t, out of t.
func (t *treap) erase(n *tnode) {
	t.root = erase(t.root, n)
	n.l, n.r, n.best = nil, nil, nil
}

// first returns the node of lowest score, or nil.
func (t *treap) first() *tnode {
	n := t.root
	for n != nil && n.l != nil {
		n = n.l
	}
	return n
}

// idlest returns the idlest node among those whose score ties lowest
// (see tied), or nil.
func (t *treap) idlest(lowest float64) *tnode {
	var best *tnode
	for n := t.root; n != nil; {
		if !tied(lowest, n.score) {
			n = n.l
			continue
		}
		// n and its whole left subtree tie.
		c := n
		if n.l != nil && idler(n.l.best, c) {
			c = n.l.best
		}
		if best == nil || idler(c, best) {
			best = c
		}
		n = n.r
	}
	return best
}

// split cuts t into the nodes before k and the others.
func split(t, k *tnode) (before, after *tnode) {
	if t == nil {
		return nil, nil
	}
	if less(t, k) {
		t.r, after = split(t.r, k)
		t.fix()
		return t, after
	}
	before, t.l = split(t.l, k)
	t.fix()
	return before, t
}

// merge joins a and b, every node of a before every node of b.
func merge(a, b *tnode) *tnode {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case a.prio > b.prio:
		a.r = merge(a.r, b)
		a.fix()
		return a
	}
	b.l = merge(a, b.l)
	b.fix()
	return b
}

func erase(t, n *tnode) *tnode {
	switch {
	case t == nil:
		return nil
	case t == n:
		return merge(t.l, t.r)
	case less(n, t):
		t.l = erase(t.l, n)
	default:
		t.r = erase(t.r, n)
	}
	t.fix()
	return t
}
