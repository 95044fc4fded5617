package slave

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// countedConn counts the writes (system calls) on a connection.
type countedConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// dialCounted opens a mutual TLS session of sb to m, with its socket
// writes counted, and says Hello.
func dialCounted(t *testing.T, m *fakeMaster, sb *certs.Bundle) (*transport.Session, *countedConn, *masterSide) {
	t.Helper()
	raw, err := net.Dial("tcp", m.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := &countedConn{Conn: raw}
	// As transport.Dial makes it: TLS over WrapTCP, the handshake first.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc := tls.Client(transport.WrapTCP(cc), auth.ClientConfig(sb, "127.0.0.1"))
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		t.Fatal(err)
	}
	s, err := transport.Client(tc, transport.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := transport.Hello(ctx, s, wire.Hello{Role: wire.RoleSlave, Name: "s1", Version: "1.0"}); err != nil {
		t.Fatal(err)
	}
	return s, cc, m.next(t)
}

// TestKeeperCorksTheEnd: over mutual TLS, the Output messages a job sends
// after its run (cork) leave with its Result in one socket write, in
// order; a session lost meanwhile drops them from the write, and the next
// session gets them once, in the replay.
func TestKeeperCorksTheEnd(t *testing.T) {
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	s, cc, ms := dialCounted(t, m, sb)
	k := newKeeper(time.Minute, 1<<20, 1<<20, slog.New(slog.DiscardHandler))
	if err := k.attach(s, wire.Register{}); err != nil {
		t.Fatal(err)
	}
	ms.expect(t, wire.MsgRegister, &wire.Register{})
	out := func(j *kept, seq uint64) wire.Output {
		o := wire.Output{JobID: j.a.JobID, Attempt: 1, Stream: wire.StreamStdout, Seq: seq, Data: []byte{byte('a' + seq)}}
		k.output(j, o)
		return o
	}
	j := k.add(wire.Assign{JobID: "j1", Attempt: 1}, func() {})
	k.start(j)
	before := cc.writes.Load()
	out(j, 0)
	if w := cc.writes.Load() - before; w != 1 {
		t.Errorf("an Output before cork: %d socket writes, want 1", w)
	}
	before = cc.writes.Load()
	k.cork(j)
	out(j, 1)
	out(j, 2)
	k.finish(j, &wire.Result{JobID: "j1", Attempt: 1, Status: wire.StatusOK}, time.Now())
	if w := cc.writes.Load() - before; w != 1 {
		t.Errorf("two Outputs and the Result after cork: %d socket writes, want 1", w)
	}
	for seq := range uint64(3) {
		var o wire.Output
		if ms.expect(t, wire.MsgOutput, &o); o.Seq != seq {
			t.Fatalf("Output seq %d, want %d", o.Seq, seq)
		}
	}
	var r wire.Result
	if ms.expect(t, wire.MsgResult, &r); r.JobID != "j1" {
		t.Fatalf("result %+v", r)
	}

	// The session is lost after cork: the held messages are not sent
	// twice, the next session's replay has each once.
	j2 := k.add(wire.Assign{JobID: "j2", Attempt: 1}, func() {})
	k.start(j2)
	k.cork(j2)
	out(j2, 0)
	k.detach(s, time.Now())
	s2, _, ms2 := dialCounted(t, m, sb)
	if err := k.attach(s2, wire.Register{}); err != nil {
		t.Fatal(err)
	}
	out(j2, 1)
	k.finish(j2, &wire.Result{JobID: "j2", Attempt: 1, Status: wire.StatusOK}, time.Now())
	var got []uint64
	for done := false; !done; {
		e := <-ms2.msgs
		var o wire.Output
		var r wire.Result
		switch {
		case e.Type == wire.MsgOutput && wire.Decode(e, &o) == nil && o.JobID == "j2":
			got = append(got, o.Seq)
		case e.Type == wire.MsgResult && wire.Decode(e, &r) == nil && r.JobID == "j2":
			done = true
		}
	}
	if len(got) != 2 || got[0] != 0 || got[1] != 1 {
		t.Fatalf("j2's Outputs on the new session: seqs %v, want [0 1]", got)
	}
}
