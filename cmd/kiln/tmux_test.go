package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln/internal/testenv"
)

// tmuxTerm is `kiln client` in a tmux session of its own size, on a
// private tmux server.
type tmuxTerm struct {
	t      *testing.T
	tmux   string
	sock   string
	width  int
	height int
}

func startTmux(t *testing.T, width, height int, args ...string) *tmuxTerm {
	t.Helper()
	tt := &tmuxTerm{t: t, tmux: testenv.Command(t, "tmux"), sock: filepath.Join(t.TempDir(), "tmux.sock"), width: width, height: height}
	cmd := append([]string{"new-session", "-d", "-x", fmt.Sprint(width), "-y", fmt.Sprint(height), "-s", "k", "--"}, args...)
	if out, err := tt.run(cmd...); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { tt.run("kill-server") })
	return tt
}

func (tt *tmuxTerm) run(args ...string) (string, error) {
	out, err := exec.Command(tt.tmux, append([]string{"-S", tt.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// screen is the pane's text now.
func (tt *tmuxTerm) screen() string {
	out, _ := tt.run("capture-pane", "-p", "-t", "k")
	return out
}

// wait waits until the screen shows every one of texts, and returns it.
func (tt *tmuxTerm) wait(texts ...string) string {
	tt.t.Helper()
	var s string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(30 * time.Millisecond) {
		s = tt.screen()
		ok := true
		for _, x := range texts {
			ok = ok && strings.Contains(s, x)
		}
		if ok {
			return s
		}
	}
	tt.t.Fatalf("%dx%d: the screen never showed %q:\n%s", tt.width, tt.height, texts, s)
	return ""
}

func (tt *tmuxTerm) keys(keys ...string) {
	if out, err := tt.run(append([]string{"send-keys", "-t", "k"}, keys...)...); err != nil {
		tt.t.Fatalf("tmux send-keys: %v\n%s", err, out)
	}
}

// TestTUITmux runs the terminal client in tmux at 80x24 and at 200x50 and
// reads the screen as a user would: every button shows its whole key and
// word, the file dialog fits the screen with its frame and hints, Esc
// closes it and F10 quits.
func TestTUITmux(t *testing.T) {
	bin := kilnBinary(t)
	hello, _ := filepath.Abs(filepath.Join("..", "..", "examples", "hello.py"))
	for _, size := range [][2]int{{80, 24}, {200, 50}} {
		t.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(t *testing.T) {
			tt := startTmux(t, size[0], size[1], "env", "KILN_BUNDLE=", "KILN_MASTER=", bin, "client", hello)
			s := tt.wait("F10 Quit", "Console", "not connected")
			buttons := []string{"F2 Connect", "F3 File", "F8 Test", "F5 Run", "F6 Edit", "F7 Info", "F9 Input", "Esc Cancel", "F10 Quit"}
			if size[0] >= 100 {
				buttons = []string{"F2 Connect", "F3 Select file", "F8 Tests", "F5 Execute", "F6 Edit", "F7 Info", "F9 Input", "Esc Cancel job", "F10 Quit"}
			}
			for _, b := range buttons {
				if !strings.Contains(s, b) {
					t.Errorf("the button %q is not whole on screen:\n%s", b, s)
				}
			}
			tt.keys("F3")
			s = tt.wait("Select a file", "Esc close", "hello.py")
			rows := strings.Split(strings.TrimRight(s, "\n"), "\n")
			if len(rows) > size[1] || !strings.Contains(rows[0]+strings.Join(rows, ""), "╔") || !strings.Contains(s, "╚") {
				t.Errorf("the file dialog does not fit %dx%d with its frame:\n%s", size[0], size[1], s)
			}
			for _, r := range rows {
				if n := len([]rune(r)); n > size[0] {
					t.Errorf("a row is %d columns wide on a %d-column screen: %q", n, size[0], r)
				}
			}
			tt.keys("Escape")
			tt.wait("F10 Quit", "Console")
			tt.keys("F10")
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(30 * time.Millisecond) {
				if _, err := tt.run("has-session", "-t", "k"); err != nil {
					break // the client quit and its session ended
				}
				if time.Now().After(deadline) {
					t.Fatalf("F10 did not quit:\n%s", tt.screen())
				}
			}
		})
	}
}
