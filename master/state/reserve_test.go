package state_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"kiln/master/state"
	"kiln/master/state/statetest"
	"kiln/transport/wire"
)

// fillUp writes path until the file system has no byte left.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{0xAA}, 64<<10)
	for n := len(buf); n > 0; {
		if _, err := f.Write(buf[:n]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			n /= 2
		}
	}
	if free, err := state.FreeSpace(filepath.Dir(path)); err != nil || free != 0 {
		t.Fatalf("file system not full after the filler: %v, %d bytes available", err, free)
	}
}

// TestReserveTakesTheLastWrite: with the disk full to the last byte and
// no CheckSpace before it (the disk filled between two checks), a
// result with 256 KiB of output is still written: the log write fails
// with ENOSPC, the reserve is released and the write done again. The
// store stays leader; CheckSpace says busy until the space is back and
// the reserve written again; the result is there after a restart.
func TestReserveTakesTheLastWrite(t *testing.T) {
	disk := statetest.SmallDisk(t, 8<<20)
	dir := filepath.Join(disk, "data")
	cfg := testConfig(dir)
	cfg.MinFree, cfg.Reserve = 64<<10, 1<<20
	s := open(t, cfg)
	j := apply(t, s, submit("alice", "print(1)"))
	apply(t, s, cmd(state.KindAssign, j.ID, 1))
	filler := filepath.Join(disk, "filler")
	fillUp(t, filler)
	out := strings.Repeat("x", 256<<10)
	if _, err := s.Apply(t.Context(), result(j.ID, 1, wire.StatusOK, out)); err != nil {
		t.Fatalf("result on a full disk: %v", err)
	}
	if !s.ReserveReleased() {
		t.Fatal("the result was written but the reserve is still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "reserve")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("reserve file after release: %v", err)
	}
	if err := s.CheckSpace(); !errors.Is(err, state.ErrDiskFull) || !strings.Contains(err.Error(), "reserve") {
		t.Fatalf("CheckSpace with the reserve used: %v, want ErrDiskFull naming the reserve", err)
	}
	os.Remove(filler)
	if err := s.CheckSpace(); err != nil {
		t.Fatalf("CheckSpace with space back: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "reserve")); err != nil || fi.Size() != 1<<20 || s.ReserveReleased() {
		t.Fatalf("reserve not written back: %v", err)
	}
	s.Close()
	s2 := open(t, cfg)
	if got, ok := s2.Machine().Job(j.ID); !ok || got.Result == nil || len(got.Output) == 0 {
		t.Fatalf("after restart, job %s has no result: %+v", j.ID, got)
	}
}

// TestOpenRefusesWithoutReserve: a disk with --min-free available but
// not the reserve is refused at start with a message naming the reserve,
// and no partial reserve file is left.
func TestOpenRefusesWithoutReserve(t *testing.T) {
	disk := statetest.SmallDisk(t, 2<<20)
	dir := filepath.Join(disk, "data")
	cfg := testConfig(dir)
	cfg.MinFree, cfg.Reserve = 64<<10, 4<<20
	s, err := state.Open(t.Context(), cfg)
	if err == nil {
		s.Close()
		t.Fatal("opened with a reserve larger than the disk")
	}
	if !errors.Is(err, state.ErrDiskFull) || !strings.Contains(err.Error(), filepath.Join(dir, "reserve")) {
		t.Fatalf("Open: %v, want ErrDiskFull naming the reserve", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "reserve")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial reserve left behind: %v", err)
	}
}
