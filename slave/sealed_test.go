package slave

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"kiln/certs"
	"kiln/transport/seal"
	"kiln/transport/wire"
)

// sealingSlave returns a Slave holding the sealing key of a new slave
// certificate ("s1", under a new CA), and that certificate's bundle.
func sealingSlave(t *testing.T) (*Slave, *certs.Bundle) {
	t.Helper()
	ca, err := certs.NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: "s1", Version: "1"})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := seal.ParsePrivateKey(b.SealKey)
	if err != nil {
		t.Fatal(err)
	}
	return &Slave{sealPriv: priv, sealPub: b.SealPublicKey()}, b
}

func TestOpenInputsRefusesTamperedPayloads(t *testing.T) {
	s, b := sealingSlave(t)
	key := seal.NewContentKey()
	src, _ := seal.Seal(key, seal.LabelSource, []byte("print('hi')\n"))
	stdin, _ := seal.Seal(key, seal.LabelStdin, []byte("input"))
	wrapped, _ := seal.Wrap(key, b.SealPublicKey(), seal.Context("J1", "input"))
	a := wire.Assign{JobID: "J1", Sealed: true, WrappedKey: wrapped, StdinSize: int64(len(stdin))}
	f := files{source: src, stdin: stdin, sealed: true}
	before := seal.ScalarMults()
	if _, p, in, err := s.openInputs(a, f); err != nil || string(p) != "print('hi')\n" || string(in) != "input" {
		t.Fatalf("intact: %q %q %v", p, in, err)
	}
	if n := seal.ScalarMults() - before; n != 1 {
		t.Fatalf("opening a job's inputs took %d scalar multiplications, want 1 (the key is parsed once)", n)
	}
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 1; return b }
	otherJob, _ := seal.Wrap(key, b.SealPublicKey(), seal.Context("J2", "input"))
	// The key wrapped in the Submit, bound to the client's nonce.
	nonce := bytes.Repeat([]byte{1}, 32)
	ahead, _ := seal.Wrap(key, b.SealPublicKey(), seal.SubmitInputContext(nonce))
	aa := a
	aa.WrappedKey, aa.WrapNonce = ahead, nonce
	if _, p, _, err := s.openInputs(aa, f); err != nil || string(p) != "print('hi')\n" {
		t.Fatalf("key wrapped in the Submit: %q %v", p, err)
	}
	cases := map[string]func(a *wire.Assign, f *files){
		"source bit flipped":       func(a *wire.Assign, f *files) { f.source = flip(f.source, len(f.source)-3) },
		"stdin bit flipped":        func(a *wire.Assign, f *files) { f.stdin = flip(f.stdin, seal.HeaderSize+1) },
		"source swapped for stdin": func(a *wire.Assign, f *files) { f.source = f.stdin },
		"key of another job":       func(a *wire.Assign, f *files) { a.WrappedKey = otherJob },
		"key altered":              func(a *wire.Assign, f *files) { a.WrappedKey = flip(a.WrappedKey, 40) },
		"files not sealed":         func(a *wire.Assign, f *files) { f.sealed = false },
		"Submit's key, no nonce":   func(a *wire.Assign, f *files) { a.WrappedKey = ahead },
		"Submit's key, other nonce": func(a *wire.Assign, f *files) {
			a.WrappedKey, a.WrapNonce = ahead, bytes.Repeat([]byte{2}, 32)
		},
		"job's key named a Submit's": func(a *wire.Assign, f *files) { a.WrapNonce = nonce },
	}
	for name, tamper := range cases {
		a2, f2 := a, f
		tamper(&a2, &f2)
		if _, p, _, err := s.openInputs(a2, f2); !errors.Is(err, errSealedAuth) || p != nil {
			t.Errorf("%s: source %q, err %v; want errSealedAuth and nothing to run", name, p, err)
		}
	}
}

// TestOutputKeyWrapRefused: the output key is wrapped for the client
// while the job starts; a client key of the wrong size fails at once, one
// of low order (no shared secret) when the wrap is done: no output is
// sent and the job ends internal_error without a key.
func TestOutputKeyWrapRefused(t *testing.T) {
	ck := seal.NewContentKey()
	o := &output{a: wire.Assign{JobID: "J1", Attempt: 1, Sealed: true, ClientKey: make([]byte, 31)}}
	if err := o.seal(ck); err == nil {
		t.Fatal("a 31-byte client key was accepted")
	}
	o = &output{a: wire.Assign{JobID: "J1", Attempt: 1, Sealed: true, ClientKey: make([]byte, 32)}}
	if err := o.seal(ck); err != nil {
		t.Fatal(err)
	}
	o.emit(wire.StreamStdout, []byte("not sent")) // o.k is nil: sending would panic
	res := wire.Result{Status: wire.StatusOK, CompileOutput: []byte("warning")}
	o.finish(&res)
	if res.Status != wire.StatusInternalError || !strings.Contains(res.Detail, "wrap the output key") || res.Key != nil || res.CompileOutput != nil {
		t.Fatalf("result %+v", res)
	}
}
