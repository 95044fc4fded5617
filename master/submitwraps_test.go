package master_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// submitWrapped submits one sealed python job (request id) on cs with
// its key wrapped in the Submit, and its source.
func submitWrapped(t *testing.T, cs *transport.Session, id uint64, sub wire.Submit) {
	t.Helper()
	src := []byte("sealed bytes")
	sub.Language, sub.FileName, sub.SourceSize, sub.ClientKey = "python", "a.py", int64(len(src)), make([]byte, 32)
	cs.Send(wire.MsgSubmit, id, sub)
	if err := cs.SendFile(context.Background(), wire.NewFileHeader(itoa(id), wire.FileSource, "a.py", src), bytes.NewReader(src)); err != nil {
		t.Fatal(err)
	}
}

func itoa(id uint64) string { return strconv.FormatUint(id, 10) }

// TestSubmitWraps: a sealed job's key wrapped in its Submit goes to a
// slave it was wrapped for in the Assign, with its nonce, and no
// WrapRequest (the master would wait for its answer, which never comes);
// for a slave it was not wrapped for, or one that did not announce the
// feature, the master asks the client as before. A durable master keeps
// the wraps in the Submit's record: no Wraps entry of its own.
func TestSubmitWraps(t *testing.T) {
	c, st := durableCluster(t)
	nonce := bytes.Repeat([]byte{9}, wire.WrapNonceSize)
	keyS1, keyOld := bytes.Repeat([]byte{1}, 81), bytes.Repeat([]byte{2}, 81)
	wraps := []wire.KeyWrap{{Slave: "s1", Key: keyS1}, {Slave: "old", Key: keyOld}}
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	slave := func(name string, features ...string) *transport.Session {
		b := c.issue(certs.RoleSlave, name, "1.0")
		ss, _ := c.dialFeatures(b, true, features)
		ss.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "python"}}, SealKey: b.SealPublicKey()})
		ss.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
		c.waitLog("slave registered", "peer="+name, "sealing=true")
		return ss
	}
	gone := func(ss *transport.Session, name string) {
		t.Helper()
		ss.Close()
		waitFor(t, "slave "+name+" gone", func() bool {
			for _, si := range c.srv.Slaves() {
				if si.Name == name {
					return false
				}
			}
			return true
		})
	}
	assigned := func(ss *transport.Session, key, nonce []byte) string {
		t.Helper()
		var a wire.Assign
		wire.Decode(recvUntil(t, ss, wire.MsgAssign), &a)
		if !bytes.Equal(a.WrappedKey, key) || !bytes.Equal(a.WrapNonce, nonce) {
			t.Fatalf("Assign of %s: key %x nonce %x, want %x %x", a.JobID, a.WrappedKey, a.WrapNonce, key, nonce)
		}
		return a.JobID
	}

	ss1 := slave("s1", wire.FeatureSubmitWraps)
	submitWrapped(t, cs, 1, wire.Submit{Sealed: true, Wraps: wraps, WrapNonce: nonce})
	id := assigned(ss1, keyS1, nonce)
	j, ok := st.Machine().Job(id)
	if !ok || len(j.Submit.Wraps) != 2 || len(j.Wraps) != 0 {
		t.Fatalf("record %v: %d wraps in the Submit, %d stored apart; want 2, 0", ok, len(j.Submit.Wraps), len(j.Wraps))
	}
	gone(ss1, "s1")

	// A slave that does not speak the feature, with a wrap in the Submit.
	ssOld := slave("old")
	submitWrapped(t, cs, 2, wire.Submit{Sealed: true, Wraps: wraps, WrapNonce: nonce})
	var req wire.WrapRequest
	wire.Decode(recvUntil(t, cs, wire.MsgWrapRequest), &req)
	asked := bytes.Repeat([]byte{3}, 81)
	cs.Send(wire.MsgWrapped, 0, wire.Wrapped{JobID: req.JobID, Attempt: req.Attempt, WrappedKey: asked})
	assigned(ssOld, asked, nil)
	gone(ssOld, "old")

	// A slave the client did not wrap for. (The master may still place
	// the job on the slave just closed and ask for it: that assignment
	// fails with its session and the job goes to s2.)
	ss2 := slave("s2", wire.FeatureSubmitWraps)
	submitWrapped(t, cs, 3, wire.Submit{Sealed: true, Wraps: wraps, WrapNonce: nonce})
	for req.Slave = ""; req.Slave != "s2"; {
		wire.Decode(recvUntil(t, cs, wire.MsgWrapRequest), &req)
		if req.Slave != "s2" && req.Slave != "old" {
			t.Fatalf("WrapRequest for %q (job %s attempt %d)", req.Slave, req.JobID, req.Attempt)
		}
	}
	cs.Send(wire.MsgWrapped, 0, wire.Wrapped{JobID: req.JobID, Attempt: req.Attempt, WrappedKey: asked})
	assigned(ss2, asked, nil)
}

// TestSubmitWrapsChecked: wraps in an unsealed Submit, a nonce of the
// wrong size, or wraps without a nonce are refused bad_request.
func TestSubmitWrapsChecked(t *testing.T) {
	c := newCluster(t)
	sealingSlave(t, c, "s1", 0)
	cs, err := c.dial(c.issue(certs.RoleClient, "mallory", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	w := []wire.KeyWrap{{Slave: "s1", Key: make([]byte, 81)}}
	for i, sub := range []wire.Submit{
		{Wraps: w, WrapNonce: make([]byte, wire.WrapNonceSize)},
		{Sealed: true, Wraps: w, WrapNonce: make([]byte, wire.WrapNonceSize-1)},
		{Sealed: true, Wraps: w},
		{WrapNonce: make([]byte, wire.WrapNonceSize)},
	} {
		id := uint64(i + 1)
		submitWrapped(t, cs, id, sub)
		env := recvReply(t, cs, id)
		var e wire.Error
		if env.Type != wire.MsgError || wire.Decode(env, &e) != nil || e.Code != wire.CodeBadRequest {
			t.Fatalf("Submit %d %+v answered %d %+v, want bad_request", id, sub, env.Type, e)
		}
	}
}
