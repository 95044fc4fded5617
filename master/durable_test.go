package master_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/master"
	"kiln/master/state"
	"kiln/transport"
	"kiln/transport/wire"
)

// durableCluster is a cluster whose master keeps its jobs in a store (in
// memory: the log's bytes are not what these tests look at).
func durableCluster(t *testing.T, tweak ...func(*master.Config)) (*cluster, *state.Store) {
	t.Helper()
	st, err := state.Open(context.Background(), state.Config{InMemory: true, Cluster: "sha256:test",
		ElectionTimeout: 50 * time.Millisecond, StartTimeout: 10 * time.Second, MinFree: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() }) // after the master stops (cleanups run last first)
	return newCluster(t, append([]func(*master.Config){func(cfg *master.Config) { cfg.Store = st }}, tweak...)...), st
}

// TestHostileClientRepeatsWraps: a client key sends Wraps for its sealed
// job again and again (each would be a durable log entry of up to
// 64 × 512 B). The first is stored; every later one, and an empty one, is
// refused bad_request without touching the record.
func TestHostileClientRepeatsWraps(t *testing.T) {
	c, st := durableCluster(t)
	sealingSlave(t, c, "s1", 0) // no free slot: the job stays queued
	cs := submitSealed(t, c, "mallory")
	var acc wire.Accepted
	wire.Decode(recvUntil(t, cs, wire.MsgAccepted), &acc)
	wraps := func(b byte) wire.Wraps {
		w := wire.Wraps{JobID: acc.JobID}
		for i := 0; i < wire.MaxWraps; i++ {
			w.Wraps = append(w.Wraps, wire.KeyWrap{Slave: "s" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Key: bytes.Repeat([]byte{b}, wire.MaxKey)})
		}
		return w
	}
	cs.Send(wire.MsgWraps, 2, wraps(1))
	if env := recvReply(t, cs, 2); env.Type != wire.MsgAccepted {
		t.Fatalf("first Wraps answered %d", env.Type)
	}
	for i := uint64(3); i < 23; i++ {
		w := wraps(byte(i))
		if i == 22 {
			w.Wraps = nil
		}
		cs.Send(wire.MsgWraps, i, w)
		env := recvReply(t, cs, i)
		var e wire.Error
		if env.Type != wire.MsgError || wire.Decode(env, &e) != nil || e.Code != wire.CodeBadRequest {
			t.Fatalf("Wraps %d answered %d %+v, want bad_request", i, env.Type, e)
		}
	}
	j, ok := st.Machine().Job(acc.JobID)
	if !ok || len(j.Wraps) != wire.MaxWraps || j.Wraps[0].Key[0] != 1 {
		t.Fatalf("record %v: %d wraps, want the first Wraps' %d", ok, len(j.Wraps), wire.MaxWraps)
	}
}

// recvReply reads s until the answer to request id.
func recvReply(t *testing.T, s *transport.Session, id uint64) wire.Envelope {
	t.Helper()
	for {
		env := recvAny(t, s)
		if env.ID == id && (env.Type == wire.MsgAccepted || env.Type == wire.MsgError) {
			return env
		}
	}
}

// TestHostileSlaveFloodsDurableOutput: a durable master keeps a running
// attempt's output in memory for the job's record, counted against the
// job's output cap before it is kept (the same check as without a store):
// a slave sending 128 times the cap ends the job output_limit, and the
// record written at the end holds no more than the cap.
func TestHostileSlaveFloodsDurableOutput(t *testing.T) {
	const limit = 256 << 10
	c, st := durableCluster(t)
	c.hostileSlave("evil", 4, flood(512, 64<<10), nil) // 32 MiB per job
	r := c.honestClient("alice").run("ok.py", []byte("print('honest')\n"), wire.JobLimits{OutputBytes: limit})
	if r.err != nil || r.res.Status != wire.StatusOutputLimit || r.output > limit {
		t.Fatalf("%+v %+v, %d output bytes for a cap of %d", r.err, r.res, r.output, limit)
	}
	j, ok := st.Machine().Job(r.res.JobID)
	if !ok || j.State != state.Failed {
		t.Fatalf("record %v %+v", ok, j)
	}
	var held int64
	for _, ch := range j.Output {
		held += int64(len(ch.Data) + len(ch.Key))
	}
	if held > limit || st.Machine().Stats().Bytes > limit+1024 {
		t.Fatalf("the record holds %d output bytes for a cap of %d", held, limit)
	}
}

// TestHostileClientPinsDurableOutput: with a store, the output of a key's
// running jobs is kept for their records until each ends; a key whose
// jobs print without ending is bounded by DurableOutputPerClient. The job
// that does not fit ends output_limit, its slave is not struck, and
// another key's job on the same slave still keeps its output.
func TestHostileClientPinsDurableOutput(t *testing.T) {
	const share = 256 << 10
	c, _ := durableCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.DurableOutputPerClient = share })
	c.hostileSlave("loud", 8, flood(3, 64<<10), nil) // 192 KiB per job, never a Result
	submit := func(cs *transport.Session, id uint64) {
		src := []byte("print('x' * 10**9)\n")
		cs.Send(wire.MsgSubmit, id, wire.Submit{Language: "python", FileName: "a.py", SourceSize: int64(len(src))})
		if err := cs.SendFile(context.Background(), wire.NewFileHeader(strconv.FormatUint(id, 10), wire.FileSource, "a.py", src), bytes.NewReader(src)); err != nil {
			t.Fatal(err)
		}
	}
	mallory := c.honestClient("mallory").cs
	submit(mallory, 1)
	submit(mallory, 2)
	var r wire.Result
	wire.Decode(recvUntil(t, mallory, wire.MsgResult), &r)
	if r.Status != wire.StatusOutputLimit || !strings.Contains(r.Detail, "DurableOutputPerClient") {
		t.Fatalf("result %+v", r)
	}
	waitFor(t, "the ended job's output let go", func() bool { return c.srv.DurableOutputHeld() == 192<<10 })
	if h := c.slaveInfo("loud").Health; strings.Contains(h, "strike") {
		t.Fatalf("the slave was struck for the key's output: %q", h)
	}
	bob := c.honestClient("bob").cs
	submit(bob, 1)
	waitFor(t, "bob's output kept", func() bool { return c.srv.DurableOutputHeld() == 2*192<<10 })
}

// TestWrapsOvertakenByDispatch: a client that submits a sealed job and
// leaves (kiln submit) sends its key wraps after Accepted; a free slave
// can get the job first, and the master then asks the client to wrap. The
// wraps that arrive next answer that request, and the client leaving
// afterwards does not cancel the job (it once ended "the client left
// before the job ran" although its key for the slave was stored).
func TestWrapsOvertakenByDispatch(t *testing.T) {
	for _, leave := range []bool{false, true} {
		t.Run(map[bool]string{false: "wraps_answer", true: "client_leaves"}[leave], func(t *testing.T) {
			c, _ := durableCluster(t)
			ss := sealingSlave(t, c, "s1", 1)
			cs := submitSealed(t, c, "alice")
			var req wire.WrapRequest
			wire.Decode(recvUntil(t, cs, wire.MsgWrapRequest), &req) // dispatched before any wraps
			key := bytes.Repeat([]byte{7}, 48)
			cs.Send(wire.MsgWraps, 2, wire.Wraps{JobID: req.JobID, Wraps: []wire.KeyWrap{{Slave: "s1", Key: key}}})
			if leave {
				if env := recvReply(t, cs, 2); env.Type != wire.MsgAccepted {
					t.Fatalf("Wraps answered %d", env.Type)
				}
				cs.Close()
			}
			var a wire.Assign
			wire.Decode(recvUntil(t, ss, wire.MsgAssign), &a)
			if a.JobID != req.JobID || !bytes.Equal(a.WrappedKey, key) {
				t.Fatalf("slave got %s with key %x, want %s with the stored wrap", a.JobID, a.WrappedKey, req.JobID)
			}
			if !leave {
				cs.Close()
			}
		})
	}
}

// sealingSlave registers a raw slave session named name that runs python
// with a sealing key and reports free slots; the session ends with the test.
func sealingSlave(t *testing.T, c *cluster, name string, free int) *transport.Session {
	t.Helper()
	b := c.issue(certs.RoleSlave, name, "1.0")
	ss, err := c.dial(b, true, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	ss.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "python"}}, SealKey: b.SealPublicKey()})
	ss.Send(wire.MsgLoad, 0, wire.Load{Slots: free})
	c.waitLog("slave registered", "peer="+name, "sealing=true")
	return ss
}

// submitSealed dials as client key name and submits one sealed python job
// (request 1) with its source.
func submitSealed(t *testing.T, c *cluster, name string) *transport.Session {
	t.Helper()
	cs, err := c.dial(c.issue(certs.RoleClient, name, "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("sealed bytes")
	cs.Send(wire.MsgSubmit, 1, wire.Submit{Language: "python", FileName: "a.py", SourceSize: int64(len(src)), Sealed: true, ClientKey: make([]byte, 32)})
	if err := cs.SendFile(context.Background(), wire.NewFileHeader("1", wire.FileSource, "a.py", src), bytes.NewReader(src)); err != nil {
		t.Fatal(err)
	}
	return cs
}
