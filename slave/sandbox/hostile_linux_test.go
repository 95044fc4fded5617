package sandbox

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln/internal/testenv"
)

// Hostile programs: each must end with the verdict it earned, leave nothing
// behind on the host, and be followed by a normal job that runs fine.

// compileC compiles src in the sandbox into dir/main.
func compileC(t *testing.T, r Runner, dir, src string) {
	t.Helper()
	writeFile(t, dir, "main.c", src)
	res := run(t, r, dir, compileLimits(), "", "gcc", "-O2", "-o", "main", "main.c")
	if res.ExitCode != 0 {
		t.Fatalf("gcc failed: %+v\n%s", res.Outcome, res.stderr)
	}
}

func compileLimits() Limits {
	return Limits{Wall: 30 * time.Second, CPU: 20 * time.Second, MemoryBytes: 512 << 20, OutputBytes: 1 << 20, FileBytes: 64 << 20, Procs: 64, OpenFiles: 256}
}

// normalJob checks that a plain job still runs fine on r.
func normalJob(t *testing.T, r Runner) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "ok.py", "import os\nprint('fine', len(os.listdir('.')), len(os.listdir('/tmp')))\n")
	res := run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "-B", "ok.py")
	if res.ExitCode != 0 || res.stdout != "fine 1 0\n" || res.TimedOut || res.MemoryExceeded {
		t.Fatalf("normal job after hostile one: %+v %q %q", res.Outcome, res.stdout, res.stderr)
	}
}

// noLeftovers fails if a host process carries marker in its command line
// or runs as one of r's host job uids.
func noLeftovers(t *testing.T, r *Strict, marker string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	first, n := r.HostIDs()
	for {
		left := hostProcs(first, n, marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left behind: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hostProcs(first, n int, marker string) []string {
	ents, _ := os.ReadDir("/proc")
	var left []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		st, err := os.Stat("/proc/" + e.Name())
		if err != nil {
			continue
		}
		uid := int(st.Sys().(*syscall.Stat_t).Uid)
		isJob := uid >= first && uid < first+n && (uid-first)%2 == 1
		if isJob || (marker != "" && bytes.Contains(cmd, []byte(marker))) {
			left = append(left, e.Name()+":"+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return left
}

func TestHostileInfiniteLoop(t *testing.T) {
	r := newStrictT(t)
	lim := defaultLimits()
	// The wall limit is far above the CPU limit so that it is the CPU limit
	// that ends the loop even on a loaded machine, where 1 s of CPU can take
	// many seconds of wall time.
	lim.CPU, lim.Wall = time.Second, 60*time.Second
	dir := t.TempDir()
	compileC(t, r, dir, "int main(void){volatile unsigned long i=0; for(;;) i++;}\n")
	res := run(t, r, dir, lim, "", "./main")
	// RLIMIT_CPU counts sampled ticks while the reported CPU is the exact
	// run time: on a loaded VM SIGXCPU came at 0.89 s of exact CPU.
	if !res.TimedOut || res.CPU < 800*time.Millisecond || res.Wall >= lim.Wall {
		t.Fatalf("C loop: %+v", res.Outcome)
	}
	writeFile(t, dir, "loop.py", "while True: pass\n")
	res = run(t, r, dir, lim, "", "/usr/bin/python3", "loop.py")
	if !res.TimedOut {
		t.Fatalf("Python loop: %+v", res.Outcome)
	}
	normalJob(t, r)
}

func TestHostileSleepForever(t *testing.T) {
	t.Parallel()
	r := newStrictT(t)
	lim := defaultLimits()
	lim.Wall = 500 * time.Millisecond
	dir := t.TempDir()
	compileC(t, r, dir, "#include <unistd.h>\nint main(void){for(;;) pause();}\n")
	res := run(t, r, dir, lim, "", "./main")
	if !res.TimedOut || res.Wall > 2*time.Second || res.Signal != int(syscall.SIGKILL) {
		t.Fatalf("C sleep: %+v", res.Outcome)
	}
	writeFile(t, dir, "s.py", "import time\ntime.sleep(10**6)\n")
	start := time.Now()
	res = run(t, r, dir, lim, "", "/usr/bin/python3", "s.py")
	if !res.TimedOut || time.Since(start) > 3*time.Second {
		t.Fatalf("Python sleep: %+v after %v", res.Outcome, time.Since(start))
	}
	normalJob(t, r)
}

func TestHostileMemoryHog(t *testing.T) {
	r := newStrictT(t)
	lim := defaultLimits()
	lim.MemoryBytes = 64 << 20
	dir := t.TempDir()
	compileC(t, r, dir, `#include <stdlib.h>
#include <string.h>
int main(void){ for(;;){ char *p = malloc(1<<20); if(!p) return 3; memset(p, 1, 1<<20);} }
`)
	res := run(t, r, dir, lim, "", "./main")
	if !res.MemoryExceeded || res.ExitCode == 0 || res.PeakMemoryKiB < 50<<10 {
		t.Fatalf("C hog: %+v", res.Outcome)
	}
	writeFile(t, dir, "hog.py", "a=[]\nwhile True: a.append(bytearray(10**7))\n")
	res = run(t, r, dir, lim, "", "/usr/bin/python3", "hog.py")
	if !res.MemoryExceeded {
		t.Fatalf("Python hog: %+v", res.Outcome)
	}
	t.Logf("python hog: %+v", res.Outcome)
	normalJob(t, r)
}

func TestHostileForkBomb(t *testing.T) {
	r := newStrictT(t)
	lim := defaultLimits()
	lim.Wall, lim.Procs = 2*time.Second, 32
	dir := t.TempDir()
	compileC(t, r, dir, "#include <unistd.h>\nint main(void){ for(;;) fork(); }\n")
	res := run(t, r, dir, lim, "", "./main")
	if !res.TimedOut && res.ExitCode == 0 {
		t.Fatalf("C fork bomb: %+v", res.Outcome)
	}
	noLeftovers(t, r, "")
	writeFile(t, dir, "bomb.py", "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n")
	res = run(t, r, dir, lim, "", "/usr/bin/python3", "bomb.py")
	if !res.TimedOut && res.ExitCode == 0 {
		t.Fatalf("Python fork bomb: %+v", res.Outcome)
	}
	noLeftovers(t, r, "")
	normalJob(t, r)
}

func TestHostileOutputFlood(t *testing.T) {
	r := newStrictT(t)
	lim := defaultLimits()
	lim.OutputBytes = 64 << 10
	dir := t.TempDir()
	compileC(t, r, dir, `#include <stdio.h>
#include <string.h>
int main(int argc, char **argv){ FILE *f = argc > 1 ? stderr : stdout; char b[4096]; memset(b, 'x', sizeof b); for(;;) fwrite(b, 1, sizeof b, f); }
`)
	for _, args := range [][]string{{"./main"}, {"./main", "err"}, {"/usr/bin/python3", "-c", "import sys\nwhile True: sys.stderr.write('y'*9999)"}} {
		res := run(t, r, dir, lim, "", args...)
		if !res.OutputExceeded || res.StdoutBytes+res.StderrBytes != lim.OutputBytes || len(res.stdout)+len(res.stderr) != int(lim.OutputBytes) {
			t.Fatalf("%v: %+v (%d+%d bytes kept)", args, res.Outcome, len(res.stdout), len(res.stderr))
		}
	}
	normalJob(t, r)
}

func TestHostileDiskFlood(t *testing.T) {
	testenv.Root(t, "the strict sandbox (a disk quota)")
	r, err := NewStrict(StrictConfig{WorkDirBytes: 8 << 20, TmpBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	lim := defaultLimits()
	lim.FileBytes = 2 << 20
	dir := t.TempDir()
	// One big file: RLIMIT_FSIZE stops it with SIGXFSZ.
	compileC(t, r, dir, `#include <stdio.h>
int main(void){ FILE *f = fopen("big", "w"); char b[65536] = {0}; for(;;) if (fwrite(b, 1, sizeof b, f) != sizeof b) return 1; }
`)
	res := run(t, r, dir, lim, "", "./main")
	if res.Signal != int(syscall.SIGXFSZ) && res.ExitCode == 0 {
		t.Fatalf("big file: %+v", res.Outcome)
	}
	// Many files: the tmpfs fills up (ENOSPC) and the program fails.
	writeFile(t, dir, "fill.py", "i=0\nwhile True:\n    open('f%d'%i,'wb').write(b'x'*(1<<20)); i+=1\n")
	res = run(t, r, dir, lim, "", "/usr/bin/python3", "fill.py")
	if res.ExitCode == 0 || !strings.Contains(res.stderr, "No space left") {
		t.Fatalf("many files: %+v %s", res.Outcome, res.stderr)
	}
	dir = t.TempDir()
	writeFile(t, dir, "tmp.py", "i=0\nwhile True:\n    open('/tmp/f%d'%i,'wb').write(b'x'*(1<<20)); i+=1\n")
	res = run(t, r, dir, lim, "", "/usr/bin/python3", "tmp.py")
	if res.ExitCode == 0 || !strings.Contains(res.stderr, "No space left") {
		t.Fatalf("/tmp flood: %+v %s", res.Outcome, res.stderr)
	}
	if n := dirSize(t, dir); n > 8<<20+1<<20 {
		t.Fatalf("host work dir grew to %d bytes", n)
	}
	normalJob(t, r)
}

func dirSize(t *testing.T, dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestHostileLeftBehind(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	compileC(t, r, dir, `#include <unistd.h>
#include <stdlib.h>
int main(void){
	if (fork() == 0) { setsid(); if (fork() == 0) { execl("/usr/bin/sleep", "sleep", "7771", (char*)0); } _exit(0); }
	if (fork() == 0) { execl("/usr/bin/sleep", "sleep", "7772", (char*)0); }
	usleep(100000);
	return 0;
}
`)
	res := run(t, r, dir, defaultLimits(), "", "./main")
	if res.ExitCode != 0 || res.TimedOut {
		t.Fatalf("C: %+v", res.Outcome)
	}
	noLeftovers(t, r, "sleep\x00777") // argv "sleep 777N", not any "777" on the host
	writeFile(t, dir, "left.py", `import os, subprocess, time
subprocess.Popen(['sleep', '7773'], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/usr/bin/sleep', ['sleep', '7774'])
    os._exit(0)
time.sleep(0.1)
print('bye')
`)
	res = run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "left.py")
	if res.ExitCode != 0 || res.stdout != "bye\n" {
		t.Fatalf("Python: %+v %s", res.Outcome, res.stderr)
	}
	noLeftovers(t, r, "sleep\x00777") // argv "sleep 777N", not any "777" on the host
	normalJob(t, r)
}

func TestHostileNetwork(t *testing.T) {
	r := newStrictT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan bool, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err == nil
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	writeFile(t, dir, "net.py", fmt.Sprintf(`import socket
for addr in [('127.0.0.1', %d), ('10.0.2.2', 80), ('8.8.8.8', 53)]:
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(addr); print('CONNECTED', addr)
    except OSError as e:
        print('refused', e.errno)
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b'x', ('8.8.8.8', 53)); print('SENT')
except OSError as e:
    print('refused', e.errno)
`, port))
	res := run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "net.py")
	if res.ExitCode != 0 || strings.Contains(res.stdout, "CONNECTED") || strings.Contains(res.stdout, "SENT") {
		t.Fatalf("network reachable: %+v %s %s", res.Outcome, res.stdout, res.stderr)
	}
	compileC(t, r, dir, fmt.Sprintf(`#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main(void){ int s = socket(AF_INET, SOCK_STREAM, 0); struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(%d);
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr); return connect(s, (struct sockaddr*)&a, sizeof a) == 0 ? 0 : 7; }
`, port))
	if res := run(t, r, dir, defaultLimits(), "", "./main"); res.ExitCode != 7 {
		t.Fatalf("C connected to the host's listener: %+v", res.Outcome)
	}
	ln.Close()
	if <-accepted {
		t.Fatal("the host's listener accepted a connection from the sandbox")
	}
	normalJob(t, r)
}

func TestHostileReadHost(t *testing.T) {
	r := newStrictT(t)
	secretDir := t.TempDir()
	secret := filepath.Join(secretDir, "secret.key")
	writeFile(t, secretDir, "secret.key", "TOPSECRET")
	dir := t.TempDir()
	writeFile(t, dir, "read.py", fmt.Sprintf(`import os
def tryread(p):
    try:
        return open(p, 'rb').read()[:200]
    except OSError as e:
        return 'denied %%d' %% e.errno
for p in [%q, '/root/.bashrc', '/etc/shadow', '/work/main/go.mod', '/proc/1/environ', '/proc/1/root/etc/hostname', '/proc/1/cwd']:
    print(p, tryread(p))
for d in ['/root', '/home', '/work', '/proc/1/root', '/sys', '/var']:
    try:
        print(d, os.listdir(d))
    except OSError as e:
        print(d, 'denied', e.errno)
print('pids', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))
print('passwd', open('/etc/passwd').read().count('\n'))
`, secret))
	res := run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "read.py")
	out := res.stdout
	if res.ExitCode != 0 || strings.Contains(out, "TOPSECRET") || strings.Contains(out, "module kiln") || strings.Contains(out, "root:") {
		t.Fatalf("host data visible: %+v\n%s\n%s", res.Outcome, out, res.stderr)
	}
	for _, want := range []string{"/root denied 2", "/work denied 2", "/sys denied 2", "passwd 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("want %q in:\n%s", want, out)
		}
	}
	t.Logf("%s", out)
	normalJob(t, r)
}

func TestHostileKillAll(t *testing.T) {
	r := newStrictT(t)
	victim := exec.Command("/usr/bin/sleep", "30")
	first, _ := r.HostIDs()
	victim.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(first + 1), Gid: uint32(first + 1)}}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { victim.Process.Kill(); victim.Wait() }()
	dir := t.TempDir()
	compileC(t, r, dir, `#include <signal.h>
#include <stdio.h>
#include <unistd.h>
int main(void){ for (int p = 1; p < 100000; p++) if (p != getpid()) kill(p, SIGKILL); printf("alive\n"); fflush(stdout); kill(-1, SIGKILL); return 0; }
`)
	res := run(t, r, dir, defaultLimits(), "", "./main")
	// Linux's kill(-1) spares the caller, so the job itself survives.
	if res.stdout != "alive\n" || res.ExitCode != 0 {
		t.Fatalf("kill -1: %+v %q", res.Outcome, res.stdout)
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("a host process with the job's uid was killed: %v", err)
	}
	normalJob(t, r)
}

func TestHostileWriteOutside(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	writeFile(t, dir, "w.py", `import os
for p in ['/x', '/etc/x', '/usr/x', '/usr/bin/python3', '/dev/x', '/proc/sys/kernel/hostname', '/w/ok', '/tmp/ok']:
    try:
        open(p, 'ab').write(b'x'); print(p, 'WROTE')
    except OSError as e:
        print(p, 'denied')
for cmd in ['mount -t tmpfs none /w', 'hostname evil', 'ip link set lo up', 'unshare -r true', 'chmod u+s /w/ok']:
    print(cmd, os.system(cmd + ' 2>/dev/null') == 0)
`)
	res := run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "w.py")
	want := "/x denied\n/etc/x denied\n/usr/x denied\n/usr/bin/python3 denied\n/dev/x denied\n/proc/sys/kernel/hostname denied\n/w/ok WROTE\n/tmp/ok WROTE\n" +
		"mount -t tmpfs none /w False\nhostname evil False\nip link set lo up False\nunshare -r true False\nchmod u+s /w/ok True\n"
	if res.stdout != want {
		t.Fatalf("got:\n%s\nwant:\n%s\n%s", res.stdout, want, res.stderr)
	}
	if st, err := os.Stat(filepath.Join(dir, "ok")); err != nil || st.Mode()&os.ModeSetuid != 0 {
		t.Fatalf("copied back: %v %v", st, err)
	}
	normalJob(t, r)
}

func TestHostilePlantLinks(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	writeFile(t, dir, "out.txt", "original")
	writeFile(t, dir, "plant.py", `import os
os.remove('out.txt')
os.symlink('/etc/passwd', 'out.txt')
os.symlink('/root', 'rootlink')
os.mkfifo('fifo')
os.mkdir('sub')
os.symlink('/etc', 'sub/etc')
open('sub/real', 'w').write('data')
os.link('plant.py', 'hard')
print('planted')
`)
	res := run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "plant.py")
	if res.stdout != "planted\n" {
		t.Fatalf("%+v %s", res.Outcome, res.stderr)
	}
	for _, name := range []string{"out.txt", "rootlink", "fifo", "sub/etc"} {
		if st, err := os.Lstat(filepath.Join(dir, name)); err == nil && !st.Mode().IsRegular() {
			t.Errorf("%s copied back as %v", name, st.Mode())
		}
	}
	if b, err := ReadFileSafe(dir, "sub/real", 100); err != nil || string(b) != "data" {
		t.Errorf("sub/real: %q %v", b, err)
	}
	if b, _ := ReadFileSafe(dir, "out.txt", 100); string(b) != "original" {
		t.Errorf("out.txt: %q", b)
	}
	normalJob(t, r)
}

func TestHostileCompileBombs(t *testing.T) {
	r := newStrictT(t)
	lim := compileLimits()
	lim.Wall, lim.CPU, lim.MemoryBytes = 3*time.Second, 2*time.Second, 256<<20
	dir := t.TempDir()
	writeFile(t, dir, "zero.c", "#include \"/dev/zero\"\n")
	res := run(t, r, dir, lim, "", "gcc", "-c", "zero.c")
	if res.ExitCode == 0 || !(res.TimedOut || res.MemoryExceeded || res.ExitCode != 0) {
		t.Fatalf("/dev/zero include: %+v", res.Outcome)
	}
	writeFile(t, dir, "tmpl.cpp", "template<int N> struct F { static const int v = F<N-1>::v + F<N-2>::v % 7; };\ntemplate<> struct F<0> { static const int v = 1; };\ntemplate<> struct F<1> { static const int v = 1; };\nint x = F<100000>::v;\n")
	res = run(t, r, dir, lim, "", "g++", "-ftemplate-depth=200000", "-c", "tmpl.cpp")
	if res.ExitCode == 0 {
		t.Fatalf("template bomb compiled: %+v", res.Outcome)
	}
	t.Logf("template bomb: %+v", res.Outcome)
	normalJob(t, r)
}

func TestStrictNoStateBetweenJobs(t *testing.T) {
	r := newStrictT(t)
	dir := t.TempDir()
	writeFile(t, dir, "a.py", `import os, sys
if sys.argv[1] == 'leave':
    open('/tmp/left', 'w').write('x')
    import ctypes
    libc = ctypes.CDLL(None)
    print(libc.shmget(0x4b494c4e, 4096, 0o1666))
else:
    print(os.listdir('/tmp'), ctypes_shm() if False else '')
`)
	writeFile(t, dir, "b.py", "import ctypes, os\nlibc = ctypes.CDLL(None)\nprint(os.listdir('/tmp'), libc.shmget(0x4b494c4e, 0, 0))\n")
	res := run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "a.py", "leave")
	if res.ExitCode != 0 || strings.TrimSpace(res.stdout) == "-1" {
		t.Fatalf("leave: %+v %s %s", res.Outcome, res.stdout, res.stderr)
	}
	res = run(t, r, dir, defaultLimits(), "", "/usr/bin/python3", "b.py")
	if res.stdout != "[] -1\n" {
		t.Fatalf("state leaked to the next job: %q %s", res.stdout, res.stderr)
	}
}
