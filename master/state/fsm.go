package state

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"
)

// fsm adapts a Machine to raft.FSM and raft.BatchingFSM.
type fsm struct{ m *Machine }

var _ raft.BatchingFSM = (*fsm)(nil)

func (f *fsm) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies a batch of committed entries under one lock. Each
// entry's answer is a []Response, one per command of the entry.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			out[i] = []Response(nil)
			continue
		}
		cmds, err := DecodeEntry(l.Data)
		if err != nil {
			out[i] = fmt.Errorf("log entry %d: %w", l.Index, err)
			continue
		}
		rs := make([]Response, len(cmds))
		for k, c := range cmds {
			rs[k] = f.m.applyLocked(c)
		}
		out[i] = rs
	}
	return out
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) { return &fsmSnapshot{img: f.m.Image()}, nil }

func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	return f.m.Restore(r)
}

// fsmSnapshot writes an Image to a raft snapshot sink.
type fsmSnapshot struct{ img *Image }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.img.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
