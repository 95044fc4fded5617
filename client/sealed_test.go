package client

import (
	"errors"
	"testing"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// fakeSlave plays the slave's side of a sealed job inside the fake master:
// it asks the client to wrap the content key, opens the inputs, and seals
// output back.
type fakeSlave struct {
	p      *peer
	job    string
	sub    wire.Submit
	files  []file
	ck     []byte // the job's content key, once wrapped for the slave
	outKey []byte
	wrap   []byte // outKey wrapped for the client
	seqs   [2]*seal.Sequence
}

// acceptSealed accepts a sealed Submit and runs the wrap exchange.
func acceptSealed(t *testing.T, m *fakeMaster, p *peer, job string) *fakeSlave {
	t.Helper()
	f := &fakeSlave{p: p, job: job}
	f.sub, f.files = p.accept(job)
	if !f.sub.Sealed || len(f.sub.ClientKey) != 32 || !f.files[0].hdr.Sealed {
		t.Fatalf("submit %+v, header %+v: not sealed", f.sub, f.files[0].hdr)
	}
	p.send(wire.MsgWrapRequest, 0, wire.WrapRequest{JobID: job, Slave: "s1", SealKey: m.slave.SealPublicKey(),
		SlaveCert: m.slave.Cert.Raw, Attempt: 1})
	var w wire.Wrapped
	if err := wire.Decode(p.recv(wire.MsgWrapped), &w); err != nil || w.Refused != "" || w.Attempt != 1 {
		t.Fatalf("wrapped = %+v, %v", w, err)
	}
	ck, err := seal.Unwrap(w.WrappedKey, m.slave.SealKey, seal.Context(job, "input"))
	if err != nil {
		t.Fatalf("unwrap content key: %v", err)
	}
	f.ck = ck
	f.outKey = seal.NewContentKey()
	if f.wrap, err = seal.Wrap(f.outKey, f.sub.ClientKey, outputContext(ck, job, 1)); err != nil {
		t.Fatal(err)
	}
	for i, label := range []string{seal.LabelStdout, seal.LabelStderr} {
		f.seqs[i], _ = seal.NewSequence(f.outKey, label)
	}
	return f
}

// output sends one sealed chunk; the first of each stream carries the key.
func (f *fakeSlave) output(stream uint8, data string, last, withKey bool) {
	m := wire.Output{JobID: f.job, Attempt: 1, Stream: stream, Data: f.seqs[stream-1].SealNext([]byte(data), last)}
	if withKey {
		m.Key = f.wrap
	}
	f.p.send(wire.MsgOutput, 0, m)
}

func TestSealedRoundTrip(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	req := hello
	req.Seal, req.Stdin = true, []byte("secret stdin")
	got := submit(t, c, req)
	f := acceptSealed(t, m, p, "j1")
	job := got()
	if string(f.files[0].data) == string(hello.Source) {
		t.Fatal("the source travelled in clear")
	}
	src, err := seal.Open(f.ck, seal.LabelSource, f.files[0].data)
	if err != nil || string(src) != string(hello.Source) {
		t.Fatalf("source opens to %q, %v", src, err)
	}
	if in, err := seal.Open(f.ck, seal.LabelStdin, f.files[1].data); err != nil || string(in) != "secret stdin" {
		t.Fatalf("stdin opens to %q, %v", in, err)
	}
	f.output(wire.StreamStdout, "hello ", false, true)
	f.output(wire.StreamStderr, "", true, true)
	f.output(wire.StreamStdout, "sealed", true, false)
	compile, _ := seal.Seal(f.outKey, seal.LabelCompile, []byte("warning: x"))
	p.send(wire.MsgResult, 0, wire.Result{JobID: "j1", Attempt: 1, Status: wire.StatusOK, Key: f.wrap, CompileOutput: compile})
	out, err := job.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Stdout) != "hello sealed" || string(out.Stderr) != "" || string(out.CompileOutput) != "warning: x" {
		t.Errorf("outcome = stdout %q, stderr %q, compile %q", out.Stdout, out.Stderr, out.CompileOutput)
	}
}

func TestSealedTamperedOutput(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	req := hello
	req.Seal = true
	got := submit(t, c, req)
	f := acceptSealed(t, m, p, "j2")
	job := got()
	msg := wire.Output{JobID: "j2", Attempt: 1, Stream: wire.StreamStdout, Key: f.wrap,
		Data: f.seqs[0].SealNext([]byte("forged?"), false)}
	msg.Data[len(msg.Data)-1] ^= 1
	p.send(wire.MsgOutput, 0, msg)
	_, err := job.Wait(testCtx(t))
	var se *SealError
	if !errors.As(err, &se) || se.Op != "output" || !errors.Is(err, seal.ErrTampered) {
		t.Fatalf("err = %v, want a tampered-output SealError", err)
	}
	// The client cancels the job nobody can read.
	var cn wire.Cancel
	if err := wire.Decode(p.recv(wire.MsgCancel), &cn); err != nil || cn.JobID != "j2" {
		t.Errorf("cancel = %+v, %v", cn, err)
	}
}

func TestSealedWrapRefused(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	req := hello
	req.Seal = true
	got := submit(t, c, req)
	p.accept("j3")
	job := got()
	// The master offers a sealing key of its own for the slave.
	_, rogue, _ := seal.GenerateKey()
	p.send(wire.MsgWrapRequest, 0, wire.WrapRequest{JobID: "j3", Slave: "s1", SealKey: rogue, SlaveCert: m.slave.Cert.Raw, Attempt: 1})
	var w wire.Wrapped
	if err := wire.Decode(p.recv(wire.MsgWrapped), &w); err != nil || w.Refused == "" || len(w.WrappedKey) != 0 {
		t.Fatalf("wrapped = %+v, %v: want a refusal", w, err)
	}
	_, err := job.Wait(testCtx(t))
	var se *SealError
	if !errors.As(err, &se) || se.Op != "wrap" {
		t.Fatalf("err = %v, want a wrap SealError", err)
	}
}
