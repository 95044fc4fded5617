package master_test

// Red team of issue 15's fast paths: attacks by key holders on what the
// session-start code did not have or did not bound.

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// TestHostileSlaveFlapsWithJobs: a slave key takes a job, drops its
// session and connects again at once, over and over. A lost slave's jobs
// are re-queued at the front of the queue, and a new session has never
// been assigned anything, so it is the idlest slave: the flapping slave
// got the same job back every time, its attempt rising without bound (a
// durable Requeue written each time), while the client's job never ran.
// A slave lost with jobs running is struck like any slave-side failure,
// so that it is quarantined after Budget.Jobs.QuarantineStrikes flaps.
func TestHostileSlaveFlapsWithJobs(t *testing.T) {
	c := newCluster(t)
	good := c.fakeSlave("good", 1, true, "python") // busy with the first job
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, e := submit(t, cs, 1, "busy.py", []byte("print(1)\n")); e != nil {
		t.Fatal(e)
	}
	<-good.jobs
	id, e := submit(t, cs, 2, "x.py", []byte("print(2)\n"))
	if e != nil {
		t.Fatal(e)
	}
	key := c.issue(certs.RoleSlave, "flap", "1.0")
	got := 0
	for flap := 0; flap < 10; flap++ {
		s := c.dialRetry(key)
		s.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}}, Slots: 1, OS: "linux"})
		s.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
		a, ok := nextAssign(s, 2*time.Second)
		if !ok {
			if h := c.slaveInfo("flap").Health; !strings.Contains(h, "quarantined") {
				t.Errorf("the flapping slave, given no job, is %q, want quarantined", h)
			}
			s.Close()
			break
		}
		s.Close()
		if a.JobID == id {
			got++
		}
	}
	t.Logf("the flapping slave got the job %d times", got)
	if got == 0 {
		t.Fatal("the flapping slave never got the job: the test proves nothing")
	}
	if got > 3 {
		t.Fatalf("a slave that drops its session with the job running got it back %d times; want it quarantined after 3", got)
	}
}

// dialRetry dials the slave port with b, announcing inline files (so that
// a job's Assign carries them and no file stream can fail), until the
// master admits it (the key's last session may not be gone yet).
func (c *cluster) dialRetry(b *certs.Bundle) *transport.Session {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, err := c.dialHello(b, true, wire.Hello{Features: []string{wire.FeatureInline}})
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			c.t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nextAssign returns the next Assign on s, or false after d without one.
func nextAssign(s *transport.Session, d time.Duration) (wire.Assign, bool) {
	ch := make(chan wire.Assign, 1)
	go func() {
		defer close(ch)
		for {
			env, err := s.Recv()
			if err != nil {
				return
			}
			var a wire.Assign
			if env.Type == wire.MsgAssign && wire.Decode(env, &a) == nil {
				ch <- a
				return
			}
		}
	}()
	select {
	case a, ok := <-ch:
		return a, ok
	case <-time.After(d):
		return wire.Assign{}, false // the reader ends when s is closed
	}
}

// bigWraps is a Submit's most wraps at their field limits: 64 × 1,152 B.
func bigWraps() []wire.KeyWrap {
	ws := make([]wire.KeyWrap, wire.MaxWraps)
	for i := range ws {
		ws[i] = wire.KeyWrap{Slave: fmt.Sprintf("%0*d", wire.MaxName, i),
			Key: bytes.Repeat([]byte{1}, wire.MaxKey), SealKey: bytes.Repeat([]byte{2}, wire.MaxKey)}
	}
	return ws
}

// TestHostileClientSubmitMetadataCounted: a Submit's wraps (64 of up to
// 1,152 B: 72 KiB) stay with its job while it is queued or running, and
// the session-start code counted none of it: a key's 128 jobs held 9 MiB
// beyond its upload share, all keys' 1,024 queued jobs 72 MiB beyond
// MaxHeldBytes, and the 1,000 ended jobs of the history kept theirs too
// (another 72 MiB). Now what a Submit keeps counts against the upload
// budgets like its files, and an ended job keeps no wraps.
func TestHostileClientSubmitMetadataCounted(t *testing.T) {
	const share = 1 << 20
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.HeldBytesPerClient = share })
	sealingSlave(t, c, "s1", 1) // takes one job and never answers
	cs, err := c.dial(c.issue(certs.RoleClient, "mallory", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	nonce := bytes.Repeat([]byte{9}, wire.WrapNonceSize)
	accepted, busy := 0, 0
	for id := uint64(1); id <= 40; id++ {
		submitWrapped(t, cs, id, wire.Submit{Sealed: true, Wraps: bigWraps(), WrapNonce: nonce})
		_, e := acceptedOrError(t, cs, id)
		switch {
		case e == nil:
			accepted++
		case e.Code == wire.CodeBusy:
			busy++
		default:
			t.Fatalf("Submit %d: %+v", id, e)
		}
	}
	per := int64(wire.MaxWraps * (wire.MaxName + 2*wire.MaxKey))
	t.Logf("%d Submits of %d B of wraps accepted, %d busy; %d B held", accepted, per, busy, c.srv.HeldBytes())
	if accepted == 0 {
		t.Fatal("no Submit with wraps accepted: the test proves nothing")
	}
	if held := c.srv.HeldBytes(); held < int64(accepted)*per {
		t.Fatalf("%d jobs keep %d B of wraps, %d B counted", accepted, int64(accepted)*per, held)
	}
	if int64(accepted-1)*per > share {
		t.Fatalf("%d jobs of %d B each accepted under a share of %d B", accepted, per, share)
	}
}
