package wire

import "testing"

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
