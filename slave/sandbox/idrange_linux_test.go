package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln/internal/testenv"
)

// Two runners on one host (two slaves) must not share host uids: each
// locks a range of its own, skipping ranges another process holds.
func TestStrictRunnersGetDistinctUIDRanges(t *testing.T) {
	testenv.Root(t, "the strict sandbox (uid ranges)")
	locks := t.TempDir()
	base := DefaultHostIDBase
	// Another slave holds the first range.
	held, err := os.Create(filepath.Join(locks, "uids-"+strconv.Itoa(base)+".lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	r1, err := NewStrict(StrictConfig{LockDir: locks})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := NewStrict(StrictConfig{LockDir: locks})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	f1, n := r1.HostIDs()
	f2, _ := r2.HostIDs()
	if f1 != base+n || f2 != base+2*n {
		t.Fatalf("ranges %d and %d, want %d and %d", f1, f2, base+n, base+2*n)
	}
	// The jobs really run under their runner's ids, not a shared one.
	uids := map[int]int{}
	var wg sync.WaitGroup
	for i, r := range []*Strict{r1, r2} {
		marker := strconv.Itoa(7790 + i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := Spec{Argv: []string{"/usr/bin/sleep", marker}, Limits: Limits{Wall: 300 * time.Millisecond}}
			if _, err := r.Run(context.Background(), spec); err != nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(uids) < 2 && time.Now().Before(deadline) {
		for i := range 2 {
			if uid, ok := procUID("sleep\x00" + strconv.Itoa(7790+i)); ok {
				uids[i] = uid
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()
	if uids[0] < f1 || uids[0] >= f1+n || uids[1] < f2 || uids[1] >= f2+n {
		t.Fatalf("job uids %v, want one in [%d,%d) and one in [%d,%d)", uids, f1, f1+n, f2, f2+n)
	}
	// A closed runner's range is free again.
	r1.Close()
	r3, err := NewStrict(StrictConfig{LockDir: locks})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if f3, _ := r3.HostIDs(); f3 != f1 {
		t.Fatalf("range after Close: %d, want %d", f3, f1)
	}
}

// procUID finds a host process whose command line contains cmdline and
// returns its uid.
func procUID(cmdline string) (int, bool) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if !strings.Contains(string(cmd), cmdline) {
			continue
		}
		if st, err := os.Stat("/proc/" + e.Name()); err == nil {
			return int(st.Sys().(*syscall.Stat_t).Uid), true
		}
	}
	return 0, false
}

// Past the last range that fits below the highest uid (or past 1024
// ranges) a runner is refused with ErrNoIDRange, not given a shared one.
func TestStrictNoFreeUIDRange(t *testing.T) {
	testenv.Root(t, "the strict sandbox (uid ranges)")
	locks := t.TempDir()
	base := 1<<32 - 2 - DefaultHostIDRange // room for exactly one range
	r1, err := NewStrict(StrictConfig{LockDir: locks, HostIDBase: base})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	if _, err := NewStrict(StrictConfig{LockDir: locks, HostIDBase: base}); !errors.Is(err, ErrNoIDRange) {
		t.Fatalf("second runner: %v, want ErrNoIDRange", err)
	}
}
