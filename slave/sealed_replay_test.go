package slave

import (
	"bytes"
	"testing"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// TestSubmitWrapReplayedUnderAnotherJob: a key wrapped in a Submit is
// bound to the client's wrap_nonce, not to a job id (there is none yet).
// A malicious master can therefore hand a job's sealed payload, wrap and
// nonce to the slave under another job id, with a client key of its own
// (it could always run the job again as a new attempt). The slave runs it,
// but the output key it wraps for that client key is bound to the job's
// content key (seal.OutputContext): whoever holds the private half of the
// client key but not the content key opens nothing, under any context it
// can compute; with the content key the same wrap opens (the control).
func TestSubmitWrapReplayedUnderAnotherJob(t *testing.T) {
	s, b := sealingSlave(t)
	// Alice's job, its key wrapped in her Submit.
	key := seal.NewContentKey()
	nonce := bytes.Repeat([]byte{7}, wire.WrapNonceSize)
	src, _ := seal.Seal(key, seal.LabelSource, []byte("print(open('/w/secret').read())\n"))
	wrapped, _ := seal.Wrap(key, b.SealPublicKey(), seal.SubmitInputContext(nonce))
	// The master's replay: another job id, its own client key.
	mallory, err := seal.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a := wire.Assign{JobID: "J999", Attempt: 1, Sealed: true, WrappedKey: wrapped, WrapNonce: nonce,
		ClientKey: mallory.PublicKey().Bytes()}
	ck, got, _, err := s.openInputs(a, files{source: src, sealed: true})
	if err != nil || !bytes.Equal(ck, key) || !bytes.HasPrefix(got, []byte("print(")) {
		t.Fatalf("the replayed job's inputs: %q %v (the test expects the slave to run it)", got, err)
	}
	o := &output{a: a}
	if err := o.seal(ck); err != nil {
		t.Fatal(err)
	}
	outWrap := o.wrappedKey()
	if outWrap == nil {
		t.Fatal(o.wrapErr)
	}
	guesses := map[string][]byte{
		"no content key":        seal.Context("J999", "output", "1"),
		"zero content key":      seal.OutputContext(make([]byte, seal.KeySize), "J999", 1),
		"another job's key":     seal.OutputContext(seal.NewContentKey(), "J999", 1),
		"the nonce as key":      seal.OutputContext(append([]byte(nil), nonce...), "J999", 1),
		"the wrap's input ctx":  seal.SubmitInputContext(nonce),
		"the Assign's job only": seal.InputContext("J999"),
	}
	for name, ctx := range guesses {
		if k, err := seal.UnwrapWith(outWrap, mallory, ctx); err == nil {
			t.Errorf("%s: the client key's holder opened the output key %x without the content key", name, k)
		}
	}
	if k, err := seal.UnwrapWith(outWrap, mallory, seal.OutputContext(key, "J999", 1)); err != nil || !bytes.Equal(k, o.key) {
		t.Fatalf("control: with the content key the wrap does not open: %v", err)
	}
}
