package master

import (
	"testing"
	"time"

	"kiln/transport/wire"
)

// TestHistoryDropsClient: a finished job kept for listings must not keep a
// departed client's session (and whatever its send queue still holds) alive.
func TestHistoryDropsClient(t *testing.T) {
	s := &Server{cfg: Config{History: 10, Now: time.Now}, jobs: map[string]*job{}, clients: map[*clientConn]struct{}{},
		queue: newFairQueue(), active: map[string]int{}, heldBy: map[string]int64{}, slaveRecs: map[string]*slaveRecord{}}
	cc := &clientConn{peer: &peer{q: sendQueue{limit: 1 << 20, shared: []*queueBytes{{limit: 1 << 20}}, wake: make(chan struct{}, 1)},
		done: make(chan struct{})},
		pending: map[string]*upload{}, jobs: map[string]*job{}}
	cc.once.Do(func() {}) // no session to close here
	s.clients[cc] = struct{}{}
	j := &job{id: "J1", client: cc, clientID: "alice", state: wire.StateRunning}
	s.jobs[j.id], cc.jobs[j.id] = j, j
	s.finishLocked(j, wire.StatusOK)
	if d, _ := s.findJob("J1"); !d.Connected {
		t.Fatal("job show says the client left while it is connected")
	}
	s.dropClient(cc)
	if len(s.history) != 1 || s.history[0].client != nil {
		t.Fatalf("history keeps the departed client: %+v", s.history)
	}
	if d, _ := s.findJob("J1"); d.Connected || d.Client != "alice" {
		t.Fatalf("job show after the client left: %+v", d)
	}
}
