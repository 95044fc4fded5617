package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"kiln/transport/wire"
)

// countConn counts the writes (system calls) made on a connection.
type countConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// countedPair is sessionPair over mutual TLS and WrapTCP, as Dial and the
// master make it, with the client's socket writes counted.
func countedPair(t *testing.T) (c, s *Session, cc *countConn) {
	t.Helper()
	dc, ac := connPair(t, "tls")
	b := batchUnder(dc)
	cc = &countConn{Conn: b.Conn}
	b.Conn = cc
	ch := make(chan *Session, 1)
	go func() {
		s, err := Server(testCtx(t, 5*time.Second), ac, testConfig())
		if err != nil {
			t.Error(err)
		}
		ch <- s
	}()
	c, err := Client(dc, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s = <-ch
	if s == nil {
		t.FailNow()
	}
	t.Cleanup(func() { s.Close() })
	return c, s, cc
}

// TestSendIsOneSocketWrite: over WrapTCP a control message, yamux header
// and body, leaves in one TLS record and one write system call (it was two
// of each), and its bytes are on the socket when Send returns: the peer
// receives it with nothing else written after.
func TestSendIsOneSocketWrite(t *testing.T) {
	c, s, cc := countedPair(t)
	for i, size := range []int{1, 1000, 16<<10 - 100} {
		before := cc.writes.Load()
		out := wire.Output{JobID: "J", Seq: uint64(i), Data: bytes.Repeat([]byte{'x'}, size)}
		if err := c.Send(wire.MsgOutput, 7, &out); err != nil {
			t.Fatal(err)
		}
		if got := cc.writes.Load() - before; got != 1 {
			t.Errorf("Send of %d bytes: %d socket writes, want 1", size, got)
		}
		e, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var back wire.Output
		if err := wire.Decode(e, &back); err != nil || len(back.Data) != size || back.Seq != uint64(i) {
			t.Fatalf("received %d bytes seq %d: %v", len(back.Data), back.Seq, err)
		}
	}
}

// TestFileStreamBatched: a 4 MiB file over WrapTCP arrives intact in about
// one socket write per batchFlush bytes instead of one per 16 KiB record.
func TestFileStreamBatched(t *testing.T) {
	c, s, cc := countedPair(t)
	data := randBytes(4<<20, 9)
	hdr := wire.NewFileHeader("J", wire.FileStdin, "big", data)
	before := cc.writes.Load()
	errc := make(chan error, 1)
	go func() { errc <- c.SendFile(testCtx(t, 30*time.Second), hdr, bytes.NewReader(data)) }()
	_, rc, err := s.AcceptFile(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes: %v", len(got), err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	writes := cc.writes.Load() - before
	if max := int64(2*len(data)/batchFlush + 16); writes > max {
		t.Errorf("%d socket writes for %d bytes, want at most %d", writes, len(data), max)
	}
	t.Logf("%d socket writes for %d bytes", writes, len(data))
}

// TestBatchConnPassThrough: outside a session's write, a WrapTCP
// connection writes at once (the TLS handshake and alerts go straight out).
func TestBatchConnPassThrough(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := WrapTCP(a)
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write([]byte("now"))
		errc <- err
	}()
	buf := make([]byte, 3)
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "now" {
		t.Fatalf("read %q: %v", buf, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestSendEnvelopesIsOneSocketWrite: several queued messages leave in one
// write system call and arrive whole and in order; a message over the
// frame cap is not sent, nor those after it, while those before it are,
// and the session stays up.
func TestSendEnvelopesIsOneSocketWrite(t *testing.T) {
	c, s, cc := countedPair(t)
	var es []wire.Envelope
	for i := range 20 {
		e, err := wire.Encode(wire.MsgJobState, uint64(i), wire.JobState{JobID: "J1", State: wire.StateAssigned, Attempt: i})
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
	before := cc.writes.Load()
	if err := c.SendEnvelopes(es); err != nil {
		t.Fatal(err)
	}
	if got := cc.writes.Load() - before; got != 1 {
		t.Errorf("20 messages: %d socket writes, want 1", got)
	}
	recv := func(want int) {
		t.Helper()
		e, err := s.Recv()
		var st wire.JobState
		if err != nil || wire.Decode(e, &st) != nil || st.Attempt != want || e.ID != uint64(want) {
			t.Fatalf("received %+v (id %d, %v), want attempt %d", st, e.ID, err, want)
		}
	}
	for i := range 20 {
		recv(i)
	}
	huge := wire.Envelope{Type: wire.MsgOutput, Body: make([]byte, testConfig().MaxFrame+1)}
	if err := c.SendEnvelopes([]wire.Envelope{es[3], huge, es[4]}); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("a batch with a message over the cap: %v, want ErrFrameTooLarge", err)
	}
	if err := c.SendEnvelopes(es[5:6]); err != nil {
		t.Fatalf("the session did not stay up: %v", err)
	}
	recv(3)
	recv(5)
}
