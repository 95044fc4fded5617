//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"kiln/internal/testenv"
)

// openPTY returns the two ends of a new pseudo-terminal.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		testenv.Need(t, "pseudo-terminals (/dev/ptmx)", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		testenv.Need(t, "pseudo-terminals (unlockpt)", err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		testenv.Need(t, "pseudo-terminals (ptsname)", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testenv.Need(t, "pseudo-terminals (open pts)", err)
	}
	t.Cleanup(func() { pts.Close(); ptm.Close() })
	return ptm, pts
}

// ptyOutput collects what the program writes to the terminal.
type ptyOutput struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *ptyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// ptyPatience bounds every wait on the terminal. It is only an upper bound
// for a machine under heavy load: each wait returns as soon as its
// condition holds.
const ptyPatience = 60 * time.Second

func (o *ptyOutput) wait(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(ptyPatience)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(o.String()); m != nil {
			return m
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("terminal never showed %v; got:\n%s", re, o.String())
	return nil
}

// TestMasterConsolePTY runs `kiln master` with a terminal on stdin: the
// console comes up in raw mode, log lines are printed above the prompt,
// /quit stops the master and the terminal is restored.
func TestMasterConsolePTY(t *testing.T) {
	ptm, pts := openPTY(t)
	before, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	out := &ptyOutput{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptm.Read(buf)
			out.mu.Lock()
			out.b.Write(buf[:n])
			out.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	dir := t.TempDir() + "/cluster"
	mustCLI(t, "init", "--dir", dir)
	mustCLI(t, "issue", "--dir", dir, "--role", "admin", "--name", "ops", "--out", dir+"/ops.bundle")

	e := env{stdin: pts, stdout: pts, stderr: pts, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), e, []string{"master", "--dir", dir,
			"--client-addr", "127.0.0.1:0", "--slave-addr", "127.0.0.1:0"})
	}()
	addr := out.wait(t, regexp.MustCompile(`clients=(127\.0\.0\.1:\d+)`))[1]
	out.wait(t, regexp.MustCompile(`kiln> $`))

	ptm.WriteString("/server list\r")
	out.wait(t, regexp.MustCompile(`NAME +LANGUAGES +RUNNING[^\n]*\r\n0 slave\(s\)\r\n`))

	// A log line while the operator is typing: printed on its own line,
	// then the prompt and the half-typed command are redrawn.
	ptm.WriteString("/client li")
	out.wait(t, regexp.MustCompile(`kiln> /client li$`))
	if code, _, errs := adminCLI(t, nil, "--bundle", dir+"/ops.bundle", "--master", addr, "keys", "list"); code != 0 {
		t.Fatalf("kiln admin: exit %d %s", code, errs)
	}
	out.wait(t, regexp.MustCompile(`msg="peer connected" peer=ops[^\n]*\r\nkiln> /client li`))
	// The admin has gone once the list is empty: list again until it is.
	ptm.WriteString("st\r")
	waitClientsGone(t, ptm, out)

	ptm.WriteString("/quit\r")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("kiln master exited %d:\n%s", code, out.String())
		}
	case <-time.After(ptyPatience):
		t.Fatalf("/quit did not stop the master:\n%s", out.String())
	}
	out.wait(t, regexp.MustCompile(`msg="master stopped"`))
	after, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("terminal not restored: lflag %#x -> %#x", before.Lflag, after.Lflag)
	}
}

// waitClientsGone reads the answers of /client list (the first already
// typed) and lists again until one says no client is connected.
func waitClientsGone(t *testing.T, ptm *os.File, out *ptyOutput) {
	t.Helper()
	count := regexp.MustCompile(`(\d+) client\(s\)`)
	deadline := time.Now().Add(ptyPatience)
	for seen := 0; time.Now().Before(deadline); {
		all := count.FindAllStringSubmatch(out.String(), -1)
		if len(all) == seen {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if all[len(all)-1][1] == "0" {
			return
		}
		seen = len(all)
		time.Sleep(50 * time.Millisecond)
		ptm.WriteString("/client list\r")
	}
	t.Fatalf("the admin's session never left /client list; got:\n%s", out.String())
}
