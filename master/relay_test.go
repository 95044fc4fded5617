package master_test

import (
	"bytes"
	"testing"

	"kiln/certs"
	"kiln/transport/wire"
)

// TestOutputRelayedAsEncoded: over mutual TLS, the client receives each
// Output of the slave as exactly the body the master would encode for it
// (what it sent before it relayed bodies as received): an Output in that
// form byte for byte as the slave sent it; one in another form (an extra
// field, a stream as a fixint) decoded and encoded again, its extra field
// dropped; one of a stale attempt, and one past the job's output cap, not
// at all (the cap ends the job output_limit).
func TestOutputRelayedAsEncoded(t *testing.T) {
	c := newCluster(t)
	fs := c.fakeSlave("s1", 1, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 64
	sub := wire.Submit{Language: "python", FileName: "a.py", SourceSize: 1, Limits: wire.JobLimits{OutputBytes: limit}}
	if err := cs.Send(wire.MsgSubmit, 1, sub); err != nil {
		t.Fatal(err)
	}
	sendFile(t, cs, wire.NewFileHeader("1", wire.FileSource, "a.py", []byte("x")), []byte("x"))
	id, e := acceptedOrError(t, cs, 1)
	if e != nil {
		t.Fatalf("%+v", e)
	}
	a := <-fs.jobs
	encode := func(o wire.Output) []byte {
		e, err := wire.Encode(wire.MsgOutput, 0, o)
		if err != nil {
			t.Fatal(err)
		}
		return e.Body
	}
	first := wire.Output{JobID: id, Attempt: a.Attempt, Stream: wire.StreamStdout, Seq: 0, Data: []byte("one")}
	second := wire.Output{JobID: id, Attempt: a.Attempt, Stream: wire.StreamStderr, Seq: 1, Data: []byte("two")}
	// second in another form: its stream a fixint, a field "x" after it.
	other := bytes.Replace(encode(second), []byte("stream\xcc\x02"), []byte("stream\x02"), 1)
	other[0]++ // one more map entry
	other = append(other, append([]byte{0xa1, 'x', 0xa4}, "junk"...)...)
	if _, ok := wire.ParseOutput(other); ok {
		t.Fatal("the other form is read in place: the test proves nothing")
	}
	stale := wire.Output{JobID: id, Attempt: a.Attempt + 1, Stream: wire.StreamStdout, Seq: 2, Data: []byte("stale")}
	over := wire.Output{JobID: id, Attempt: a.Attempt, Stream: wire.StreamStdout, Seq: 3, Data: bytes.Repeat([]byte("o"), limit)}
	if err := fs.sess.SendEnvelopes([]wire.Envelope{
		{Type: wire.MsgOutput, ID: 7, Body: encode(first)},
		{Type: wire.MsgOutput, Body: other},
		{Type: wire.MsgOutput, Body: encode(stale)},
		{Type: wire.MsgOutput, Body: encode(over)},
	}); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for {
		env := recvAny(t, cs)
		if env.Type == wire.MsgOutput {
			if env.ID != 0 {
				t.Errorf("Output relayed with envelope id %d", env.ID)
			}
			got = append(got, env.Body)
			continue
		}
		if env.Type != wire.MsgResult {
			continue
		}
		var r wire.Result
		wire.Decode(env, &r)
		if r.Status != wire.StatusOutputLimit {
			t.Fatalf("result %+v, want output_limit", r)
		}
		break
	}
	want := [][]byte{encode(first), encode(second)}
	if len(got) != len(want) {
		t.Fatalf("the client got %d Outputs, want %d (stale and over the cap dropped): %q", len(got), len(want), got)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("Output %d: the client got % x, want % x", i, got[i], want[i])
		}
	}
}
