package state_test

import (
	"bytes"
	"reflect"
	"testing"

	"kiln/master/state"
)

// FuzzDecodeCommand: any bytes in a log entry either fail with
// ErrBadCommand or decode to a command that re-encodes to an equal one,
// and applying it never panics.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range randomCommands(1, 30) {
		b, _ := c.Encode()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := state.DecodeCommand(b)
		if err != nil {
			return
		}
		enc, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := state.DecodeCommand(enc)
		if err != nil || !reflect.DeepEqual(c.Kind, c2.Kind) || c.Job != c2.Job || c.Attempt != c2.Attempt {
			t.Fatalf("re-decode: %v %+v %+v", err, c, c2)
		}
		m := state.NewMachine()
		m.Apply(submit("a", "x"))
		m.Apply(c)
	})
}

// FuzzRestore: any snapshot bytes are restored or refused, never a panic,
// and a restored state writes a snapshot that restores to the same bytes.
func FuzzRestore(f *testing.F) {
	m := state.NewMachine()
	for _, c := range randomCommands(2, 40) {
		m.Apply(c)
	}
	var b bytes.Buffer
	m.Image().WriteTo(&b)
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		n := state.NewMachine()
		if err := n.Restore(bytes.NewReader(b)); err != nil {
			return
		}
		var out1, out2 bytes.Buffer
		n.Image().WriteTo(&out1)
		o := state.NewMachine()
		if err := o.Restore(bytes.NewReader(out1.Bytes())); err != nil {
			t.Fatalf("re-restore: %v", err)
		}
		o.Image().WriteTo(&out2)
		if !bytes.Equal(out1.Bytes(), out2.Bytes()) {
			t.Fatal("snapshot of a restored state is not stable")
		}
	})
}
