package client

import (
	"bytes"
	"testing"
	"time"

	"kiln/transport/wire"
)

// TestOutputBounded: a slave that sends more output than the job's bound
// makes the client buffer the bound, not what was sent (a hostile slave
// once made kiln run hold 10 GB); Outcome.Truncated says so, and a reader
// of Events that fell behind gets a Gap instead of every chunk.
func TestOutputBounded(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	req := hello
	req.Limits.OutputBytes = 10_000
	got := submit(t, c, req)
	p.accept("j1")
	job := got()
	chunk := bytes.Repeat([]byte("x"), 1000)
	for range 100 {
		p.send(wire.MsgOutput, 0, wire.Output{JobID: "j1", Attempt: 1, Stream: wire.StreamStdout, Data: chunk})
	}
	p.send(wire.MsgResult, 0, wire.Result{JobID: "j1", Attempt: 1, Status: wire.StatusOK})
	out, err := job.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Stdout) != 10_000 || !out.Truncated {
		t.Fatalf("buffered %d bytes of 100 000 (truncated %v), want the 10 000 bound", len(out.Stdout), out.Truncated)
	}
	var queued int64
	var gap *Gap
	for ev := range job.Events() {
		if ev.Output != nil {
			queued += int64(len(ev.Output.Data))
		}
		if ev.Gap != nil {
			gap = ev.Gap
		}
	}
	if queued > 10_000 || gap == nil || gap.Events != 90 || gap.Bytes != 90_000 {
		t.Fatalf("events held %d output bytes, gap %+v; want at most 10 000 and a gap of 90 events", queued, gap)
	}
}

// TestSubmitRetryHonoursRetryAfter: SubmitRetry waits the master's
// retry_after before it submits again (bench used to retry every 10 ms).
func TestSubmitRetryHonoursRetryAfter(t *testing.T) {
	m := newFakeMaster(t)
	c, p := m.dial(t, m.client)
	type res struct {
		j       *Job
		retries int
		err     error
	}
	ch := make(chan res, 1)
	go func() {
		j, n, err := c.SubmitRetry(testCtx(t), hello)
		ch <- res{j, n, err}
	}()
	env := p.recv(wire.MsgSubmit)
	p.send(wire.MsgError, env.ID, wire.Error{Code: wire.CodeBusy, Message: "queue full", RetryAfterMs: 300})
	busyAt := time.Now()
	env = p.recv(wire.MsgSubmit)
	if d := time.Since(busyAt); d < 300*time.Millisecond {
		t.Fatalf("submitted again %v after a 300 ms retry_after", d)
	}
	p.send(wire.MsgAccepted, env.ID, wire.Accepted{JobID: "j9"})
	r := <-ch
	if r.err != nil || r.retries != 1 || r.j.ID() != "j9" {
		t.Fatalf("SubmitRetry = %v, %d retries, %v", r.j, r.retries, r.err)
	}
}
