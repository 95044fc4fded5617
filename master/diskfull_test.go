package master_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln/master"
	"kiln/master/state"
	"kiln/master/state/statetest"
	"kiln/transport/wire"
)

// fill writes path until the file system is full (ENOSPC), then gives
// back leave bytes.
func fill(t *testing.T, path string, leave int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xAA}, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for n := len(buf) / 2; n > 0; n /= 2 { // the last partial pages too
		f.Write(buf[:n])
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(path), &st); err != nil || st.Bavail != 0 {
		t.Fatalf("file system not full after the filler: %v, %d blocks available", err, st.Bavail)
	}
	if leave > 0 {
		size, _ := f.Seek(0, io.SeekCurrent)
		if err := f.Truncate(size - leave); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDiskFillsWhileRunning (issue 12, "a disk that fills while
// running"): the master's data directory is on a 16 MiB tmpfs with a
// 2 MiB reserve file; 16 jobs are accepted and running when a filler file
// takes the free space, down to under --min-free (1 MiB here) or to the
// last byte. A new Submit is refused busy with a reason naming the disk,
// and the reserve is released; the running jobs finish and each result
// and output reaches the client exactly once; Submits stay busy until the
// filler is gone and the reserve written back, then one is accepted
// again; and after a restart of the store on the same directory every
// job that was running has its result stored (none runs again) and no
// accepted job is missing.
func TestDiskFillsWhileRunning(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leave int64 // bytes the filler leaves available
	}{{"under min-free", 768 << 10}, {"to the last byte", 0}} {
		t.Run(tc.name, func(t *testing.T) { diskFills(t, tc.leave) })
	}
}

func diskFills(t *testing.T, leave int64) {
	const jobs, outBytes = 16, 16 << 10
	disk := statetest.SmallDisk(t, 16<<20)
	data := filepath.Join(disk, "data")
	open := func() *state.Store {
		st, err := state.Open(context.Background(), state.Config{Dir: data, Cluster: "sha256:diskfull",
			ElectionTimeout: 50 * time.Millisecond, StartTimeout: 10 * time.Second, MinFree: 1 << 20, Reserve: 2 << 20})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	stClosed := false
	t.Cleanup(func() {
		if !stClosed {
			st.Close()
		}
	})
	c := newCluster(t, func(cfg *master.Config) { cfg.Store = st })
	release := make(chan struct{})
	output := func(id string) []byte { return append([]byte(id+":"), bytes.Repeat([]byte("y"), outBytes)...) }
	c.hostileSlave("s1", jobs, func(h *hostileSlave, a wire.Assign) {
		select {
		case <-release:
		case <-h.sess.Done():
			return
		}
		h.sess.Send(wire.MsgOutput, 0, wire.Output{JobID: a.JobID, Attempt: a.Attempt, Stream: wire.StreamStdout, Data: output(a.JobID)})
		h.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK})
	}, nil)
	cs := c.honestClient("alice").cs
	src := []byte("print('hi')\n")
	submit := func(id uint64) wire.Envelope {
		if err := cs.Send(wire.MsgSubmit, id, wire.Submit{Language: "python", FileName: "a.py", SourceSize: int64(len(src))}); err != nil {
			t.Fatal(err)
		}
		if err := cs.SendFile(context.Background(), wire.NewFileHeader(strconv.FormatUint(id, 10), wire.FileSource, "a.py", src), bytes.NewReader(src)); err != nil {
			t.Fatal(err)
		}
		return recvReply(t, cs, id)
	}
	var accepted []string
	for id := uint64(1); id <= jobs; id++ {
		env := submit(id)
		var a wire.Accepted
		if env.Type != wire.MsgAccepted || wire.Decode(env, &a) != nil {
			t.Fatalf("Submit %d answered %d", id, env.Type)
		}
		accepted = append(accepted, a.JobID)
	}
	waitFor(t, "every job running", func() bool {
		for _, id := range accepted {
			if j, ok := st.Machine().Job(id); !ok || j.State != state.Assigned {
				return false
			}
		}
		return true
	})

	filler := filepath.Join(disk, "filler")
	fill(t, filler, leave)

	// A new Submit: busy, naming the disk.
	env := submit(100)
	var e wire.Error
	if env.Type != wire.MsgError || wire.Decode(env, &e) != nil || e.Code != wire.CodeBusy ||
		!strings.Contains(e.Message, "bytes available") || !strings.Contains(e.Message, data) {
		t.Fatalf("Submit on a full disk answered %d %+v, want busy naming %s", env.Type, e, data)
	}
	if !st.ReserveReleased() {
		t.Fatal("the disk is full but the reserve was not released")
	}

	// The running jobs finish; results and output reach the client.
	close(release)
	got := map[string]wire.Result{}
	outs := map[string][]byte{}
	for len(got) < len(accepted) {
		env := recvAny(t, cs)
		switch env.Type {
		case wire.MsgResult:
			var r wire.Result
			wire.Decode(env, &r)
			if _, twice := got[r.JobID]; twice {
				t.Fatalf("job %s: a second result reached the client", r.JobID)
			}
			got[r.JobID] = r
		case wire.MsgOutput:
			var o wire.Output
			wire.Decode(env, &o)
			outs[o.JobID] = append(outs[o.JobID], o.Data...)
		}
	}
	for _, id := range accepted {
		if got[id].Status != wire.StatusOK || !bytes.Equal(outs[id], output(id)) {
			t.Fatalf("job %s: result %+v, %d output bytes", id, got[id], len(outs[id]))
		}
	}

	// Still full: Submits stay busy while the reserve is not back.
	env = submit(101)
	if env.Type != wire.MsgError || wire.Decode(env, &e) != nil || e.Code != wire.CodeBusy {
		t.Fatalf("Submit with the reserve used answered %d %+v, want busy", env.Type, e)
	}

	// Space back: a Submit is accepted again once the reserve is
	// written back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for id, deadline := uint64(200), time.Now().Add(10*time.Second); ; id++ {
		env := submit(id)
		if env.Type == wire.MsgAccepted {
			var a wire.Accepted
			wire.Decode(env, &a)
			accepted = append(accepted, a.JobID)
			break
		}
		var e wire.Error
		wire.Decode(env, &e)
		if e.Code != wire.CodeBusy || time.Now().After(deadline) {
			t.Fatalf("Submit after the filler went answered %d %+v", env.Type, e)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.ReserveReleased() {
		t.Fatal("a Submit was accepted before the reserve was written back")
	}
	if fi, err := os.Stat(filepath.Join(data, "reserve")); err != nil || fi.Size() != 2<<20 {
		t.Fatalf("reserve after space came back: %v", err)
	}

	// Restart the store on the same directory: no accepted job is missing.
	c.stop()
	if err := st.Close(); err != nil {
		t.Fatalf("closing the store: %v", err)
	}
	stClosed = true
	st2 := open()
	defer st2.Close()
	ended, again := 0, 0
	for i, id := range accepted {
		j, ok := st2.Machine().Job(id)
		switch {
		case ok && j.Result == nil && i < jobs:
			t.Fatalf("the result of job %s (running when the disk filled) was not kept: %s", id, j.State)
		case ok && i < jobs && !j.Delivered:
			t.Fatalf("job %s: its delivery to the client was not kept (a re-attach would send it again)", id)
		case !ok:
			t.Fatalf("after restart, accepted job %s is missing", id)
		case j.Result != nil:
			var out []byte
			for _, ch := range j.Output {
				out = append(out, ch.Data...)
			}
			if j.Result.Status != wire.StatusOK || !bytes.Equal(out, output(id)) {
				t.Fatalf("after restart, job %s: result %+v, %d output bytes", id, j.Result, len(out))
			}
			ended++
		case j.State == state.Queued || j.State == state.Assigned:
			again++ // runs again after the restart
		default:
			t.Fatalf("after restart, job %s in state %s without a result", id, j.State)
		}
	}
	if ended < jobs {
		t.Fatalf("after restart: %d jobs ended with their result, want at least the %d that were running", ended, jobs)
	}
	t.Logf("after restart: %d jobs ended with their result, %d to run", ended, again)
}
