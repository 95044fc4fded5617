package transport

import (
	"context"
	"runtime"
	"testing"
	"time"

	"kiln/transport/wire"
)

// TestRefusedSessionsKeepNothing: a session refused after an oversized
// Hello keeps none of what the peer sent once it is closed. yamux keeps a
// stream this side half-closed for StreamCloseTimeout (2 min), with its
// receive buffer, waiting for a FIN a hostile peer never sends: each
// refused Hello of 900 000 features kept ~1.8 MB that long, and a flood of
// them grew the master to 2.5 GB in 12 s.
func TestRefusedSessionsKeepNothing(t *testing.T) {
	heap := func() int64 {
		for range 3 {
			runtime.GC()
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	hello, err := wire.Encode(wire.MsgHello, 0, wire.Hello{Features: make([]string, 900_000)})
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	before := heap()
	for range n {
		dc, ac := connPair(t, "tls")
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := Server(ctx, ac, Config{})
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := ReadHello(ctx, s); err == nil {
				t.Error("an oversized Hello was accepted")
			}
			RefuseWith(s, wire.Refused{Code: wire.CodeBadHello, Reason: "too large"})
			s.Close()
		}()
		c, err := Client(dc, Config{})
		if err != nil {
			t.Fatal(err)
		}
		c.SendEnvelopes([]wire.Envelope{hello})
		<-done
		c.Close()
	}
	if per := (heap() - before) / n; per > 256<<10 {
		t.Fatalf("each refused session keeps %d KiB after it is closed, want under 256 KiB", per>>10)
	}
	runtime.KeepAlive(hello)
}
