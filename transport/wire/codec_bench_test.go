package wire

import (
	"fmt"
	"testing"
)

// BenchmarkEncode and BenchmarkDecode are the cost of the messages every
// job sends through the master (issue 15).
func BenchmarkEncode(b *testing.B) {
	for _, m := range benchMessages() {
		b.Run(m.t.String(), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if _, err := Encode(m.t, 7, m.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, m := range benchMessages() {
		e, err := Encode(m.t, 7, m.body)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(m.t.String(), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				v, _ := NewBody(m.t)
				if err := Decode(e, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type benchMessage struct {
	t    MsgType
	body any
}

func benchMessages() []benchMessage {
	return []benchMessage{
		{MsgJobState, JobState{JobID: "J123456", State: StateAssigned, Slave: "slave-17", Attempt: 1}},
		{MsgAccepted, Accepted{JobID: "J123456", Position: 3}},
		{MsgResult, Result{JobID: "J123456", Attempt: 1, Status: StatusOK, Language: "python", WallMs: 12, CPUMs: 9, MemoryKiB: 9000}},
		{MsgAssign, Assign{JobID: "J123456", Attempt: 1, Language: "python", FileName: "hello.py", SourceSize: 20, Owner: "3f2a"}},
		{MsgSubmit, Submit{Language: "python", FileName: "hello.py", SourceSize: 20}},
	}
}

// TestEncodeBodiesOwnTheirBytes: Encode recycles its buffer, so every
// body it returns must be a copy: bodies encoded earlier still decode to
// what they held after many more encodes, from several goroutines.
func TestEncodeBodiesOwnTheirBytes(t *testing.T) {
	done := make(chan error, 4)
	for g := range 4 {
		go func() {
			var es []Envelope
			for i := range 200 {
				e, err := Encode(MsgJobState, 0, JobState{JobID: "J", State: StateQueued, Attempt: g*1000 + i})
				if err != nil {
					done <- err
					return
				}
				es = append(es, e)
			}
			for i, e := range es {
				var st JobState
				if err := Decode(e, &st); err != nil || st.Attempt != g*1000+i {
					done <- fmt.Errorf("body %d of goroutine %d decodes to attempt %d (%v)", i, g, st.Attempt, err)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
