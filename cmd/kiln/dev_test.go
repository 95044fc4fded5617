package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDevPrintsWorkingRunCommand starts `kiln dev` as a user would, takes
// the export line it prints, and runs a program with exactly that.
func TestDevPrintsWorkingRunCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	dev := startKiln(t, "dev", "dev", "--dir", dir, "--client-addr", freeAddr(t), "--slave-addr", freeAddr(t),
		"--local-slots", "1", "--console", "off")
	dev.waitOutput(t, "slave registered", 1)
	m := regexp.MustCompile(`export (KILN_BUNDLE=\S+) (KILN_MASTER=\S+)`).FindStringSubmatch(dev.out.String())
	if m == nil {
		t.Fatalf("kiln dev printed no export line:\n%s", dev.out.String())
	}
	prog := writeFile(t, t.TempDir(), "dev.py", "print('hello from kiln dev')\n")
	code, out, errs := kilnCmd(t, []string{m[1], m[2]}, "run", prog)
	if code != 0 || !strings.Contains(out, "hello from kiln dev") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if !strings.Contains(dev.out.String(), "kiln run examples/hello.c") {
		t.Errorf("kiln dev did not print the run command:\n%s", dev.out.String())
	}
}

// TestDevSignalRemovesTempDir starts `kiln dev` without --dir as a user
// does, then ends it as a closed terminal (SIGHUP) or a service manager
// (SIGTERM) would: it exits 0 and its temporary directory, CA key included,
// is gone.
func TestDevSignalRemovesTempDir(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp := t.TempDir()
			p := &proc{cmd: exec.Command(kilnBinary(t), "dev", "--client-addr", freeAddr(t), "--slave-addr", freeAddr(t),
				"--local-slots", "1"), out: &syncBuf{}, done: make(chan struct{})}
			p.cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
			p.start(t, "dev")
			p.waitOutput(t, "slave registered", 1)
			keys, _ := filepath.Glob(filepath.Join(tmp, "kiln-dev-*", "ca.key"))
			if len(keys) != 1 {
				t.Fatalf("want one kiln-dev-*/ca.key in %s, found %v", tmp, keys)
			}
			p.cmd.Process.Signal(sig)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("kiln dev ignored %v", sig)
			}
			if code := p.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit code %d after %v, want 0", code, sig)
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, "kiln-dev-*")); len(left) != 0 {
				t.Errorf("%v left %v behind", sig, left)
			}
		})
	}
}

// TestDevConsoleLinesStartAtColumnZero runs `kiln dev` on a terminal: the
// console puts it in raw mode, where a bare "\n" moves down without going
// back to column 0. Every line the terminal receives, log lines printed
// after the prompt included, must end in "\r\n".
func TestDevConsoleLinesStartAtColumnZero(t *testing.T) {
	ptm, pts := openPTY(t)
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
	dir := filepath.Join(t.TempDir(), "dev")
	e := env{stdin: pts, stdout: pts, stderr: pts, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() {
		done <- run(context.Background(), e, []string{"dev", "--dir", dir,
			"--client-addr", "127.0.0.1:0", "--slave-addr", "127.0.0.1:0", "--local-slots", "1", "--local-sandbox", "none"})
	}()
	addr := out.wait(t, regexp.MustCompile(`KILN_MASTER=(127\.0\.0\.1:\d+)`))[1]
	out.wait(t, regexp.MustCompile(`kiln> `))
	out.wait(t, regexp.MustCompile(`msg="slave registered"`))
	// Log lines after the prompt: an admin connects and leaves.
	if code, _, errs := adminCLI(t, nil, "--bundle", filepath.Join(dir, "admin.bundle"), "--master", addr, "keys", "list"); code != 0 {
		t.Fatalf("kiln admin: exit %d %s", code, errs)
	}
	out.wait(t, regexp.MustCompile(`peer=dev-admin[^\n]*\n`))
	ptm.WriteString("/quit\r")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("kiln dev exited %d:\n%s", code, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("/quit did not stop kiln dev:\n%s", out.String())
	}
	text := out.String()
	if i := regexp.MustCompile(`[^\r]\n`).FindStringIndex(text); i != nil {
		lo := max(0, i[0]-600)
		t.Fatalf("a line ends in a bare \\n (the next starts mid-screen): %q", text[lo:i[1]])
	}
}
