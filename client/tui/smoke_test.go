package tui

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kiln/internal/testenv"
	"kiln/transport/wire"
)

// tmux drives the real binary in a private tmux server.
type tmux struct {
	t       *testing.T
	socket  string
	session string
}

func newTmux(t *testing.T) *tmux {
	t.Helper()
	testenv.Command(t, "tmux")
	tm := &tmux{t: t, socket: fmt.Sprintf("kiln-tui-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	t.Cleanup(func() { exec.Command("tmux", "-L", tm.socket, "kill-server").Run() })
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", tm.socket}, args...)...).CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (tm *tmux) start(name, command string) {
	tm.t.Helper()
	tm.session = name
	tm.run("new-session", "-d", "-s", name, "-x", "120", "-y", "40", command)
}

func (tm *tmux) keys(keys ...string) {
	tm.run(append([]string{"send-keys", "-t", tm.session}, keys...)...)
}

func (tm *tmux) capture() string { return tm.run("capture-pane", "-p", "-t", tm.session) }

// wait waits until the pane shows every one of texts.
func (tm *tmux) wait(texts ...string) {
	tm.t.Helper()
	var pane string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		pane = tm.capture()
		ok := true
		for _, x := range texts {
			ok = ok && strings.Contains(pane, x)
		}
		if ok {
			return
		}
	}
	tm.t.Fatalf("pane never showed %q:\n%s", texts, pane)
}

// panePID is the pid of the pane's first process.
func (tm *tmux) panePID() int {
	pid, err := strconv.Atoi(strings.TrimSpace(tm.run("display-message", "-p", "-t", tm.session, "#{pane_pid}")))
	if err != nil {
		tm.t.Fatal(err)
	}
	return pid
}

// buildKiln builds cmd/kiln into a temporary directory.
func buildKiln(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kiln")
	cmd := exec.Command("go", "build", "-o", bin, "kiln/cmd/kiln")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func gone(pid int) bool { return syscall.Kill(pid, 0) != nil }

func TestSmokeBinaryInTmux(t *testing.T) {
	needLang(t, wire.LangPython)
	tm := newTmux(t)
	bin := buildKiln(t)
	c := newCluster(t)
	src := writeSource(t, "smoke.py", "print('smoke test says hi')\n")
	base := fmt.Sprintf("%s client --bundle %s --master %s %s", bin, c.bundle, c.clientAddr, src)

	// F2 connect, F5 execute, F7 info, F10 quit: the shell prints the exit code.
	tm.start("keys", base+"; echo KILN-EXIT=$?; sleep 60")
	tm.wait("F2 Connect", "File: "+src)
	tm.keys("F2")
	tm.wait("F2 Disconnect", "as alice")
	tm.keys("F5")
	tm.wait("smoke test says hi", "smoke.py: ok, exit code 0", "slave s1")
	tm.keys("F7")
	tm.wait("1 slave(s)", "python")
	tm.keys("F10")
	tm.wait("KILN-EXIT=0")
	if strings.Contains(tm.capture(), "F5 Execute") {
		t.Errorf("the terminal was not restored after F10:\n%s", tm.capture())
	}

	// SIGTERM: the client disconnects, restores the terminal and exits 0.
	tm.start("term", base+"; echo KILN-EXIT=$?; sleep 60")
	tm.wait("F2 Connect")
	tm.keys("F2")
	tm.wait("F2 Disconnect")
	shell := tm.panePID()
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", shell, shell))
	pid, err := strconv.Atoi(strings.Fields(string(kids) + " x")[0])
	if err != nil {
		t.Fatalf("no kiln process under the pane's shell %d: %q", shell, kids)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	tm.wait("KILN-EXIT=0")

	// SIGHUP: closing the terminal (killing the session) ends the client.
	tm.start("hup", "exec "+base)
	tm.wait("F2 Connect")
	tm.keys("F2")
	tm.wait("F2 Disconnect")
	pid = tm.panePID()
	tm.run("kill-session", "-t", "hup")
	for deadline := time.Now().Add(10 * time.Second); !gone(pid) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !gone(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatal("kiln client survived SIGHUP for 10 s")
	}
}
