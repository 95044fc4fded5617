package master

import (
	"bytes"
	"testing"

	"kiln/transport/wire"
)

// TestSendQueueCountsBatchBeingWritten: the batch a peer's send loop is
// writing still counts against the peer's bound and the shared ones until
// it is written, so a peer that stops reading holds at most the bound,
// not the bound plus the batch stuck in its write.
func TestSendQueueCountsBatchBeingWritten(t *testing.T) {
	key := &queueBytes{limit: 1 << 20}
	q := &sendQueue{limit: 64 << 10, shared: []*queueBytes{key}, wake: make(chan struct{}, 1)}
	msg := wire.Envelope{Type: wire.MsgOutput, Body: bytes.Repeat([]byte("x"), 8<<10)}
	pushed := 0
	for {
		if ok, _ := q.push(msg); !ok {
			break
		}
		pushed++
	}
	full := q.bytes
	batch, cost := q.popBatch(nil)
	if len(batch) == 0 || len(batch) == pushed || cost <= 0 {
		t.Fatalf("popBatch took %d of %d messages (%d bytes)", len(batch), pushed, cost)
	}
	if q.bytes != full || key.n.Load() != full {
		t.Fatalf("while its batch is written the peer counts %d bytes (key %d), want all %d", q.bytes, key.n.Load(), full)
	}
	if ok, _ := q.push(msg); ok {
		t.Fatal("a message was queued past the bound while a batch was being written")
	}
	q.sent(cost)
	if q.bytes != full-cost || key.n.Load() != full-cost || q.writing != 0 {
		t.Fatalf("after the write: %d bytes (key %d, writing %d), want %d", q.bytes, key.n.Load(), q.writing, full-cost)
	}
	if ok, _ := q.push(msg); !ok {
		t.Fatal("no room after the batch was written")
	}
	// The peer goes while a batch is being written: drop gives back what
	// is queued, sent the batch, and nothing is counted twice.
	_, cost = q.popBatch(nil)
	q.drop()
	q.sent(cost)
	if q.bytes != 0 || key.n.Load() != 0 {
		t.Fatalf("after drop and the last write: %d bytes, key %d, want 0", q.bytes, key.n.Load())
	}
}
