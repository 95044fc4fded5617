package master_test

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/master/state"
	"kiln/transport/wire"
)

// copyDir copies the files of dir to a new directory: the data directory
// as a crash would leave it, taken while nothing is being written.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(filepath.Join(to, rel))
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// TestCrashLosesLazyAssign: an Assign is written lazily (with the next
// entry, or LazyDelay later), so a crash can lose it while its slave runs
// the job. The crash is the data directory copied while the Assign waits
// (LazyDelay of an hour). The master started on that copy finds the job
// queued: it must not run it again as attempt 1, the attempt the slave
// still holds (the client could mix both runs' output, which it tells
// apart only by attempt). The state moves it to attempt 2 at start; the
// slave's held attempt 1 is cancelled when it registers; attempt 2 runs
// and is the job's one Result.
func TestCrashLosesLazyAssign(t *testing.T) {
	pki := authtest.New(t)
	dir := t.TempDir()
	openStore := func(dir string) *state.Store {
		st, err := state.Open(context.Background(), state.Config{Dir: dir, Cluster: "sha256:test", LazyDelay: time.Hour,
			ElectionTimeout: 50 * time.Millisecond, StartTimeout: 10 * time.Second, MinFree: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st := openStore(dir)
	c := clusterOf(t, pki, func(cfg *master.Config) { cfg.Store = st })
	slaveKey := c.issue(certs.RoleSlave, "s1", "1.0")
	s1, err := c.dial(slaveKey, true, "")
	if err != nil {
		t.Fatal(err)
	}
	s1.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}}, Slots: 1, OS: "linux"})
	s1.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
	c.waitLog("slave registered", "peer=s1")
	cl, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	id, e := submit(t, cl, 1, "a.py", []byte("print('x')\n"))
	if e != nil {
		t.Fatal(e)
	}
	var a wire.Assign
	for env := recvAny(t, s1); env.Type != wire.MsgAssign; env = recvAny(t, s1) {
	}
	// The master proposed the Assign before it sent it.
	if rec, _ := st.Machine().Job(id); rec.State != state.Queued {
		t.Fatalf("the Assign was written at once (%s): the test proves nothing", rec.State)
	}
	crashed := copyDir(t, dir)
	s1.Close()
	cl.Close()
	c.stop()

	st2 := openStore(crashed)
	if rec, _ := st2.Machine().Job(id); rec.State != state.Queued || rec.Attempt != 2 {
		t.Fatalf("after the crash the job is %s at attempt %d, want queued at attempt 2", rec.State, rec.Attempt)
	}
	c2 := clusterOf(t, pki, func(cfg *master.Config) { cfg.Store = st2 })
	s1, err = c2.dial(slaveKey, true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s1.Send(wire.MsgRegister, 0, wire.Register{Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}},
		Slots: 2, OS: "linux", Held: []wire.HeldJob{{JobID: id, Attempt: 1}}})
	s1.Send(wire.MsgLoad, 0, wire.Load{Slots: 2})
	cancelled, assigned := false, 0
	for !cancelled || assigned == 0 {
		env := recvAny(t, s1)
		switch env.Type {
		case wire.MsgCancel:
			var cn wire.Cancel
			wire.Decode(env, &cn)
			cancelled = cancelled || cn.JobID == id
		case wire.MsgAssign:
			wire.Decode(env, &a)
			if a.JobID == id {
				if a.Attempt != 2 {
					t.Fatalf("the job ran again as attempt %d, which its slave still held", a.Attempt)
				}
				assigned = a.Attempt
			}
		}
	}
	s1.Send(wire.MsgResult, 0, wire.Result{JobID: id, Attempt: 1, Status: wire.StatusOK}) // the held run's, late: stale
	s1.Send(wire.MsgResult, 0, wire.Result{JobID: id, Attempt: 2, Status: wire.StatusOK})
	waitFor(t, "the job's result written", func() bool {
		rec, _ := st2.Machine().Job(id)
		return rec.Ended()
	})
	if rec, _ := st2.Machine().Job(id); rec.State != state.Done || rec.Result.Attempt != 2 {
		t.Fatalf("record %s, result of attempt %d; want done by attempt 2", rec.State, rec.Result.Attempt)
	}
}
