package state_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"kiln/master/state"
	"kiln/transport/wire"
)

const cluster = "sha256:aaaa"

func testConfig(dir string) state.Config {
	return state.Config{Dir: dir, Cluster: cluster, ElectionTimeout: 50 * time.Millisecond,
		SnapshotInterval: time.Hour, SnapshotThreshold: 1 << 20, StartTimeout: 10 * time.Second, MinFree: 1, Reserve: 64 << 10}
}

func open(t *testing.T, cfg state.Config) *state.Store {
	t.Helper()
	s, err := state.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func apply(t *testing.T, s *state.Store, c *state.Command) *state.Job {
	t.Helper()
	j, err := s.Apply(context.Background(), c)
	if err != nil {
		t.Fatalf("%s %s: %v", c.Kind, c.Job, err)
	}
	return j
}

// runJobs submits n jobs and finishes every other one.
func runJobs(t *testing.T, s *state.Store, n int) {
	for i := 0; i < n; i++ {
		j := apply(t, s, submit("alice", fmt.Sprintf("print(%d)", i)))
		if i%2 == 0 {
			apply(t, s, cmd(state.KindAssign, j.ID, 1))
			apply(t, s, result(j.ID, 1, wire.StatusOK, j.ID))
		}
	}
}

func storeImage(t *testing.T, s *state.Store) []byte { return image(t, s.Machine()) }

// closedImage is the image want once the store is closed: with the clean
// mark Close writes (KindStop).
func closedImage(t *testing.T, want []byte) []byte {
	t.Helper()
	m := state.NewMachine()
	if err := m.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	m.Apply(&state.Command{Kind: state.KindStop, Now: t0})
	return image(t, m)
}

// TestStoreRestartFromSnapshotAndLog closes a store whose state is an
// old snapshot plus log entries after it, opens it again, and gets the
// same state back; the id sequence goes on where it stopped.
func TestStoreRestartFromSnapshotAndLog(t *testing.T) {
	dir := t.TempDir()
	s := open(t, testConfig(dir))
	runJobs(t, s, 20)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	runJobs(t, s, 10)
	apply(t, s, &state.Command{Kind: state.KindDrain, Slave: "s1"})
	want := closedImage(t, storeImage(t, s))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if snaps, _ := os.ReadDir(filepath.Join(dir, "snapshots")); len(snaps) != 1 {
		t.Fatalf("%d snapshots, want 1", len(snaps))
	}

	s = open(t, testConfig(dir))
	if got := storeImage(t, s); !bytes.Equal(got, want) {
		t.Fatalf("restored state differs: %d bytes, want %d", len(got), len(want))
	}
	if j := apply(t, s, submit("alice", "again")); j.ID != "J31" {
		t.Fatalf("next id %s, want J31", j.ID)
	}
	if j, _ := s.Machine().Job("J29"); j.State != state.Done || string(j.Output[0].Data) != "J29" {
		t.Fatalf("J29 after restart: %+v", j)
	}
	if d := s.Machine().Slaves(); len(d) != 1 || !d[0].Drained {
		t.Fatalf("drain lost: %+v", d)
	}
	s.Close()

	// Log only, no snapshot: the same.
	dir2 := t.TempDir()
	s = open(t, testConfig(dir2))
	runJobs(t, s, 5)
	want = closedImage(t, storeImage(t, s))
	s.Close()
	s = open(t, testConfig(dir2))
	if got := storeImage(t, s); !bytes.Equal(got, want) {
		t.Fatal("state restored from the log alone differs")
	}
}

// TestStoreSnapshotTrimsLog: past the threshold raft snapshots and trims
// the log; a restart then needs the snapshot and gives the same state.
func TestStoreSnapshotTrimsLog(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.SnapshotThreshold, cfg.TrailingLogs, cfg.SnapshotInterval = 16, 4, 20*time.Millisecond
	s := open(t, cfg)
	runJobs(t, s, 40)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if snaps, _ := os.ReadDir(filepath.Join(dir, "snapshots")); len(snaps) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot taken past the threshold")
		}
		time.Sleep(10 * time.Millisecond)
	}
	runJobs(t, s, 3)
	want := closedImage(t, storeImage(t, s))
	s.Close()
	s = open(t, cfg)
	if !bytes.Equal(storeImage(t, s), want) {
		t.Fatal("state after restart differs")
	}
}

func TestStoreConcurrentApply(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	var wg sync.WaitGroup
	ids := make(chan string, 200)
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := 0; i < 50; i++ {
				ids <- apply(t, s, submit("a", "x")).ID
			}
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %s handed out twice", id)
		}
		seen[id] = true
	}
	if len(seen) != 200 || s.Machine().Stats().Seq != 200 {
		t.Fatalf("%d ids, seq %d", len(seen), s.Machine().Stats().Seq)
	}
}

func TestStoreApplyAfterClose(t *testing.T) {
	s := open(t, testConfig(t.TempDir()))
	s.Close()
	if _, err := s.Apply(context.Background(), submit("a", "x")); !errors.Is(err, state.ErrNotLeader) {
		t.Fatalf("apply after close: %v", err)
	}
}

// dirSum hashes every file under dir, to prove a refusal left it alone.
func dirSum(t *testing.T, dir string) string {
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "LOCK" {
			return err
		}
		b, err := os.ReadFile(p)
		fmt.Fprintf(h, "%s %d %x\n", p, len(b), sha256.Sum256(b))
		return err
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// populated returns a data directory holding a snapshot and a log.
func populated(t *testing.T) string {
	dir := t.TempDir()
	s := open(t, testConfig(dir))
	runJobs(t, s, 10)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	runJobs(t, s, 10)
	s.Close()
	return dir
}

func TestOpenRefusesBadDataDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir string) state.Config
		want  error
		says  string
	}{
		{"second master", func(t *testing.T, dir string) state.Config {
			open(t, testConfig(dir))
			return testConfig(dir)
		}, state.ErrLocked, fmt.Sprintf("held by process %d", os.Getpid())},
		{"other cluster", func(t *testing.T, dir string) state.Config {
			c := testConfig(dir)
			c.Cluster = "sha256:bbbb"
			return c
		}, state.ErrOtherCluster, "belongs to the cluster of CA sha256:aaaa, this master's CA is sha256:bbbb"},
		{"garbage store", func(t *testing.T, dir string) state.Config {
			os.WriteFile(filepath.Join(dir, "raft.db"), bytes.Repeat([]byte("kiln"), 8192), 0o600)
			return testConfig(dir)
		}, state.ErrCorrupt, "raft.db"},
		{"truncated store", func(t *testing.T, dir string) state.Config {
			p := filepath.Join(dir, "raft.db")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/3)
			return testConfig(dir)
		}, state.ErrCorrupt, "raft.db"},
		{"damaged snapshot", func(t *testing.T, dir string) state.Config {
			ms, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*", "state.bin"))
			if len(ms) == 0 {
				t.Fatal("no snapshot")
			}
			b, _ := os.ReadFile(ms[0])
			b[len(b)/2] ^= 0xff
			os.WriteFile(ms[0], b, 0o600)
			return testConfig(dir)
		}, state.ErrCorrupt, "snapshot"},
		{"damaged log entry", func(t *testing.T, dir string) state.Config {
			db, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
			if err != nil {
				t.Fatal(err)
			}
			last, _ := db.LastIndex()
			db.StoreLog(&raft.Log{Index: last + 1, Term: 2, Type: raft.LogCommand, Data: []byte{0xc1, 0x00}})
			db.Close()
			return testConfig(dir)
		}, state.ErrCorrupt, "log entry"},
		{"store deleted", func(t *testing.T, dir string) state.Config {
			os.Remove(filepath.Join(dir, "raft.db"))
			return testConfig(dir)
		}, state.ErrCorrupt, "no raft.db"},
		{"cluster file deleted", func(t *testing.T, dir string) state.Config {
			os.Remove(filepath.Join(dir, "CLUSTER"))
			return testConfig(dir)
		}, state.ErrCorrupt, "no CLUSTER file"},
		{"disk full", func(t *testing.T, dir string) state.Config {
			c := testConfig(dir)
			c.MinFree = 1 << 62
			return c
		}, state.ErrDiskFull, "bytes available"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := populated(t)
			cfg := tc.spoil(t, dir)
			before := dirSum(t, dir)
			_, err := state.Open(context.Background(), cfg)
			t.Log(err)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("err %v, want %v naming %s and saying %q", err, tc.want, dir, tc.says)
			}
			if dirSum(t, dir) != before {
				t.Fatal("a refused data directory was changed")
			}
		})
	}
}

// TestOpenRefusesLogWithoutSnapshot: the snapshots of a trimmed log are
// gone; starting from the log alone would silently lose the jobs before.
func TestOpenRefusesLogWithoutSnapshot(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.TrailingLogs = 2
	s := open(t, cfg)
	runJobs(t, s, 10)
	if err := s.Snapshot(); err != nil {
		t.Fatal(err)
	}
	runJobs(t, s, 2)
	s.Close()
	os.RemoveAll(filepath.Join(dir, "snapshots"))
	os.Mkdir(filepath.Join(dir, "snapshots"), 0o700)
	_, err := state.Open(context.Background(), cfg)
	if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "no snapshot covers") {
		t.Fatalf("err %v", err)
	}
}
