package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sparseLinks makes one 60 MiB sparse file holding one byte and 30 hard
// links to it in /w, in about 2 ms, then exits 7.
const sparseLinks = `#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void){
	int fd = open("big", O_WRONLY|O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 60<<20) != 0 || pwrite(fd, "x", 1, 30<<20) != 1) return 1;
	close(fd);
	char name[32];
	for (int i = 0; i < 30; i++) { snprintf(name, sizeof name, "link%d", i); if (link("big", name) != 0) return 2; }
	return 7;
}
`

// hostBytes sums the allocated bytes of the files below dir, each inode
// once, and the apparent sizes of every name.
func hostBytes(dir string) (alloc, apparent int64) {
	seen := map[uint64]bool{}
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		apparent += fi.Size()
		if !seen[st.Ino] {
			seen[st.Ino] = true
			alloc += st.Blocks * 512
		}
		return nil
	})
	return alloc, apparent
}

// A sparse file with 30 hard links made the slave write 31 full copies
// (1.95 GB) and spend 0.6-11 s on it, uncharged. Now even a job whose
// files are all kept costs the host its allocated bytes once.
func TestCopyBackSparseHardLinks(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	compileC(t, r, dir, sparseLinks)
	before, _ := hostBytes(dir)
	lim := defaultLimits()
	lim.FileBytes = 64 << 20 // as the executor's run step
	for _, keep := range []func(string) bool{nil, keepAll} {
		var so, se safeBuf
		spec := Spec{Argv: []string{"./main"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, Stdout: &so, Stderr: &se, Limits: lim, Keep: keep}
		start := time.Now()
		out, err := r.Run(context.Background(), spec)
		busy := time.Since(start)
		after, apparent := hostBytes(dir)
		t.Logf("keep all %v: job wall %v, slave busy %v (%v past the job), host bytes written %d (apparent %d)",
			keep != nil, out.Wall, busy, busy-out.Wall, after-before, apparent)
		if err != nil || out.ExitCode != 7 {
			t.Fatalf("%v %+v %s", err, out, se.String())
		}
		if after-before > 64<<10 || busy-out.Wall > 2*time.Second {
			t.Fatalf("host bytes written %d, slave busy %v past the job", after-before, busy-out.Wall)
		}
		if keep == nil {
			if _, err := os.Lstat(filepath.Join(dir, "big")); err == nil || len(out.NotKept) != 0 {
				t.Fatalf("copied back without Keep: %v %v", err, out.NotKept)
			}
			continue
		}
		st, err := os.Stat(filepath.Join(dir, "big"))
		if err != nil || st.Size() != 60<<20 || st.Sys().(*syscall.Stat_t).Blocks*512 > 64<<10 {
			t.Fatalf("big: %v %v (holes not kept?)", st, err)
		}
		b, _ := ReadFileSafe(dir, "big", 64<<20)
		if len(b) != 60<<20 || b[30<<20] != 'x' || b[0] != 0 {
			t.Fatalf("big's content differs")
		}
		links := 0
		for _, n := range out.NotKept {
			if strings.Contains(n, "hard link") {
				links++
			}
		}
		if links != 30 || len(out.NotKept) != 30 {
			t.Fatalf("not kept: %q", out.NotKept)
		}
	}
	normalJob(t, r)
}

// More entries or deeper directories in /w than the copy walks must leave
// the program's verdict alone and say what was not copied.
func TestCopyBackBoundsKeepTheVerdict(t *testing.T) {
	r := newStrictT(t)
	dir := tmpfsDir(t) // as the slave's work root; 10 000 files take 5 s on this disk
	compileC(t, r, dir, `#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void){
	char name[64];
	for (int i = 0; i < 10001; i++) { snprintf(name, sizeof name, "f%05d", i); FILE *f = fopen(name, "w"); if (!f) return 1; fclose(f); }
	for (int i = 0; i < 20; i++) { if (mkdir("d", 0755) != 0 || chdir("d") != 0) return 2; }
	FILE *f = fopen("deep", "w"); if (!f) return 3; fclose(f);
	return 7;
}
`)
	for _, keep := range []func(string) bool{nil, keepAll} {
		var se safeBuf
		spec := Spec{Argv: []string{"./main"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, Stderr: &se, Limits: defaultLimits(), Keep: keep}
		start := time.Now()
		out, err := r.Run(context.Background(), spec)
		t.Logf("keep all %v: job wall %v, run %v", keep != nil, out.Wall, time.Since(start))
		if err != nil || out.ExitCode != 7 {
			t.Fatalf("keep all %v: %v %+v %s", keep != nil, err, out, se.String())
		}
		all := strings.Join(out.NotKept, "\n")
		if keep != nil && (len(out.NotKept) != 2 || !strings.Contains(all, "more than 10000 entries") || !strings.Contains(all, "deeper than 16 levels")) {
			t.Fatalf("not kept: %q", out.NotKept)
		}
	}
	// Depth alone: the subtree past 16 levels is left, the rest copied.
	dir = t.TempDir()
	writeFile(t, dir, "deep.py", "import os\nos.makedirs('/w/' + '/'.join(['e'] * 20))\nopen('/w/top', 'w').write('t')\nraise SystemExit(7)\n")
	out := run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "deep.py")
	if out.ExitCode != 7 || len(out.NotKept) != 1 || !strings.Contains(out.NotKept[0], "deeper than 16 levels") {
		t.Fatalf("%+v %s", out.Outcome, out.stderr)
	}
	if b, err := ReadFileSafe(dir, "top", 10); err != nil || string(b) != "t" {
		t.Fatalf("top: %q %v", b, err)
	}
}

// The byte budget stops the copy (the tmpfs's size bounds /w, so only a
// budget smaller than what the job wrote shows it).
func TestCopyOutBudget(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	for _, n := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(src, n), make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	notKept, err := copyOut(w, dst, nil, keepAll, 2<<20+4096)
	if err != nil || len(notKept) != 1 || notKept[0] != "c: "+errOverBudget.Error() {
		t.Fatalf("%v %q", err, notKept)
	}
	if alloc, _ := hostBytes(dst); alloc > 2<<20+4096 {
		t.Fatalf("wrote %d bytes", alloc)
	}
	for _, n := range []string{"a", "b"} {
		if st, err := os.Stat(filepath.Join(dst, n)); err != nil || st.Size() != 1<<20 || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", n, st, err)
		}
	}
}

// tmpfsDir returns a temporary directory on a tmpfs (/dev/shm), or on
// disk when there is none.
func tmpfsDir(t *testing.T) string {
	var st syscall.Statfs_t
	if syscall.Statfs("/dev/shm", &st) != nil || st.Type != 0x01021994 {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("/dev/shm", "kiln-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
