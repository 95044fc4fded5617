package slave

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/goleak"

	"kiln/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func key(i int) string { return CacheKey("", "c", "gcc 1", nil, "", []byte(fmt.Sprint(i))) }

func art(n int) []Artifact {
	return []Artifact{{Name: "main", Mode: 0o755, Data: bytes.Repeat([]byte{'x'}, n)}}
}

func TestCacheKey(t *testing.T) {
	base := CacheKey("alice", "java", "javac 17", []string{"-d", "."}, "A.java", []byte("src"))
	for _, other := range []string{
		CacheKey("alice", "java", "javac 18", []string{"-d", "."}, "A.java", []byte("src")),
		CacheKey("alice", "java", "javac 17", []string{"-d."}, "A.java", []byte("src")),
		CacheKey("alice", "java", "javac 17", []string{"-d", "."}, "B.java", []byte("src")),
		CacheKey("alice", "java", "javac 17", []string{"-d", "."}, "A.java", []byte("src2")),
		CacheKey("alice", "jav", "ajavac 17", []string{"-d", "."}, "A.java", []byte("src")),
		CacheKey("bob", "java", "javac 17", []string{"-d", "."}, "A.java", []byte("src")),
		CacheKey("", "java", "javac 17", []string{"-d", "."}, "A.java", []byte("src")),
	} {
		if other == base {
			t.Error("different inputs share a key")
		}
	}
	if !validKey(base) || base != CacheKey("alice", "java", "javac 17", []string{"-d", "."}, "A.java", []byte("src")) {
		t.Error("key not stable or not hex")
	}
}

func TestCacheEvictsBySize(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Put(key(i), art(400)); err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			if _, ok := c.Get(key(0)); !ok { // 0 becomes most recent
				t.Fatal("miss right after put")
			}
		}
	}
	if _, ok := c.Get(key(1)); ok {
		t.Error("least recently used entry survived")
	}
	for _, i := range []int{0, 2} {
		arts, ok := c.Get(key(i))
		if !ok || len(arts) != 1 || len(arts[0].Data) != 400 || arts[0].Mode != 0o700 {
			t.Errorf("entry %d: %v %+v", i, ok, arts)
		}
	}
	if c.Size() != 800 || c.Len() != 2 {
		t.Errorf("size %d len %d", c.Size(), c.Len())
	}
	if err := c.Put(key(9), art(2000)); err != nil || c.Len() != 2 {
		t.Errorf("oversized put: %v, len %d", err, c.Len())
	}
	if _, err := os.Stat(c.path(key(1))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("evicted entry still on disk: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d entries on disk, want 2", len(ents))
	}
}

// Nothing of a job is at rest in the cache in plaintext: artifacts are
// sealed under a key only the process holds, entry names tell nothing of
// the source, tampering is a miss, and a restart empties the directory.
func TestCacheSealedAtRest(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, CacheLimits{DiskBytes: 1 << 20, MemoryBytes: -1}) // every Get reads the disk
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("KILN-SECRET-PROGRAM-TEXT")
	k := CacheKey("alice", "c", "gcc 1", nil, "", secret)
	if err := c.Put(k, []Artifact{{Name: "main", Mode: 0o755, Data: secret}}); err != nil {
		t.Fatal(err)
	}
	var files []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
			if b, _ := os.ReadFile(p); bytes.Contains(b, secret) {
				t.Errorf("%s holds the artifact in plaintext", p)
			}
		}
		if strings.Contains(p, k) {
			t.Errorf("%s names the cache key", p)
		}
		return nil
	})
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
	if arts, ok := c.Get(k); !ok || !bytes.Equal(arts[0].Data, secret) {
		t.Fatalf("get: %v %+v", ok, arts)
	}
	b, _ := os.ReadFile(files[0])
	b[len(b)-1] ^= 1
	os.WriteFile(files[0], b, 0o600)
	if _, ok := c.Get(k); ok || c.Len() != 0 {
		t.Fatal("a tampered entry was served")
	}
	c.Put(k, []Artifact{{Name: "main", Mode: 0o755, Data: secret}})
	again, err := NewCache(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 || again.Len() != 0 {
		t.Fatalf("a new cache kept %d entries of the last process", len(ents))
	}
}

// The most recently used entries are kept opened in memory, within
// CacheLimits.MemoryBytes: they are served without reading their files
// (tampering with those does not reach them), the others are read and
// opened again, an entry larger than the bound is never held, and an
// entry evicted from the disk leaves memory too.
func TestCacheHeldInMemory(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, CacheLimits{DiskBytes: 2000, MemoryBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Put(key(i), art(400)); err != nil {
			t.Fatal(err)
		}
	}
	if c.MemorySize() != 800 {
		t.Fatalf("%d bytes held in memory, want 800 (two entries under the 1000 bound)", c.MemorySize())
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 1
			os.WriteFile(p, b, 0o600)
		}
		return nil
	})
	for _, i := range []int{1, 2} {
		arts, ok := c.Get(key(i))
		if !ok || len(arts[0].Data) != 400 || arts[0].Mode != 0o700 {
			t.Errorf("entry %d, held in memory: %v %+v", i, ok, arts)
		}
	}
	if _, ok := c.Get(key(0)); ok {
		t.Error("entry 0 was not read from its (tampered) file")
	}
	if err := c.Put(key(3), art(1500)); err != nil {
		t.Fatal(err)
	}
	if arts, ok := c.Get(key(3)); !ok || len(arts[0].Data) != 1500 {
		t.Errorf("entry over the memory bound: %v", ok)
	}
	// Entry 3 (1500) pushed 1 out of the disk (1500+400+400 > 2000): it
	// leaves memory with it; entry 2 stays held.
	if _, ok := c.Get(key(1)); ok || c.Len() != 2 || c.MemorySize() != 400 {
		t.Errorf("after eviction: len %d, %d bytes in memory, want 2 and 400", c.Len(), c.MemorySize())
	}
}

func TestCacheConcurrent(t *testing.T) {
	c, err := NewCache(t.TempDir(), 4000)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				k := key(i % 12)
				if arts, ok := c.Get(k); ok && len(arts[0].Data) != 300 {
					t.Errorf("goroutine %d: torn entry", g)
				}
				_ = c.Put(k, art(300))
			}
		})
	}
	wg.Wait()
	if c.Size() > 4000 || c.Size() != int64(c.Len())*300 {
		t.Errorf("size %d for %d entries", c.Size(), c.Len())
	}
}

func TestReadRegularRefuses(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	fifo := filepath.Join(dir, "fifo")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, fifo, dir, "/dev/null"} {
		if _, _, err := readRegular(p, 1<<20); !errors.Is(err, errNotRegular) {
			t.Errorf("readRegular(%s) = %v, want errNotRegular", p, err)
		}
	}
	if _, _, err := readRegular(target, 3); err == nil {
		t.Error("size cap not applied")
	}
	if data, _, err := readRegular(target, 100); err != nil || string(data) != "secret" {
		t.Errorf("regular file: %q %v", data, err)
	}
	if err := writeNew(dir, "link", []byte("x"), 0o644); err == nil {
		t.Error("writeNew followed or replaced a symlink")
	}
	if b, _ := os.ReadFile(target); string(b) != "secret" {
		t.Error("symlink target was overwritten")
	}
}

func TestDetect(t *testing.T) {
	tcs := toolchains(t)
	if len(tcs) == 0 {
		testenv.Need(t, "a toolchain", errors.New("slave.Detect found none on this machine"))
	}
	for _, tc := range tcs {
		if !filepath.IsAbs(tc.Path) || tc.Compiler == "" || isScript(tc.Path) {
			t.Errorf("toolchain %+v: want an absolute real binary and a version", tc)
		}
		t.Logf("%s: %s (%s)", tc.Language, tc.Compiler, tc.Path)
	}
	h := DetectHost(context.Background())
	if h.OS == "" || h.Arch == "" || h.CPUs < 1 || h.MemBytes == 0 {
		t.Errorf("host %+v", h)
	}
}

func TestDetectPythonShim(t *testing.T) {
	dir := t.TempDir()
	shim := filepath.Join(dir, "python3")
	real := "/usr/bin/python3"
	testenv.File(t, real)
	if err := os.WriteFile(shim, []byte("#!/bin/sh\nexec "+real+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	d := detector{lookPath: func(name string) (string, error) {
		if name == "python3" {
			return shim, nil
		}
		return "", errors.New("none")
	}}
	tcs := d.detect(context.Background())
	if len(tcs) != 1 || tcs[0].Path != realPath(real) || isScript(tcs[0].Path) {
		t.Fatalf("got %+v, want the interpreter behind the shim", tcs)
	}
}

func TestLoadSampler(t *testing.T) {
	s := NewLoadSampler()
	ctx := context.Background()
	s.Sample(ctx, 0, 2)
	l := s.Sample(ctx, 1, 2)
	if l.Running != 1 || l.Slots != 2 || l.MemTotal == 0 || l.CPUPercent < 0 || l.CPUPercent > 100 {
		t.Errorf("load %+v", l)
	}
}
