package tui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"kiln/transport/wire"
)

// simUI is a UI running on a simulation screen.
type simUI struct {
	t    *testing.T
	u    *UI
	sim  tcell.SimulationScreen
	done chan error
}

func startUI(t *testing.T, opts Options) *simUI {
	t.Helper()
	sim := tcell.NewSimulationScreen("UTF-8")
	opts.Screen = sim
	u := New(opts)
	sim.SetSize(120, 40)
	s := &simUI{t: t, u: u, sim: sim, done: make(chan error, 1)}
	go func() { s.done <- u.Run(context.Background()) }()
	t.Cleanup(func() {
		u.Quit()
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			t.Error("UI did not stop within 10 s")
		}
	})
	s.wait("F2 Connect")
	return s
}

// screen returns the screen's text, one string per row, read in the event
// loop so that it never races a draw.
func (s *simUI) screen() []string {
	ch := make(chan []string, 1)
	go s.u.app.QueueUpdate(func() {
		cells, w, h := s.sim.GetContents()
		rows := make([]string, h)
		for y := range h {
			var b strings.Builder
			for x := range w {
				r := cells[y*w+x].Runes
				if len(r) == 0 {
					b.WriteByte(' ')
				} else {
					b.WriteString(string(r))
				}
			}
			rows[y] = b.String()
		}
		ch <- rows
	})
	select {
	case rows := <-ch:
		return rows
	case <-time.After(5 * time.Second):
		s.t.Fatal("the event loop did not answer within 5 s")
	}
	return nil
}

// wait waits until the screen shows every one of texts.
func (s *simUI) wait(texts ...string) {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var rows []string
	for time.Now().Before(deadline) {
		rows = s.screen()
		all := strings.Join(rows, "\n")
		ok := true
		for _, x := range texts {
			ok = ok && strings.Contains(all, x)
		}
		if ok {
			return
		}
		time.Sleep(30 * time.Millisecond)
	}
	s.t.Fatalf("screen never showed %q:\n%s", texts, strings.Join(rows, "\n"))
}

func (s *simUI) key(k tcell.Key) { s.sim.InjectKey(k, 0, tcell.ModNone) }

func (s *simUI) typeText(text string) {
	for _, r := range text {
		if r == '\n' {
			s.key(tcell.KeyEnter)
			continue
		}
		s.sim.InjectKey(tcell.KeyRune, r, tcell.ModNone)
	}
}

// click clicks the left button on the first cell of text.
func (s *simUI) click(text string) {
	s.t.Helper()
	for y, row := range s.screen() {
		if i := strings.Index(row, text); i >= 0 {
			x := len([]rune(row[:i]))
			s.sim.InjectMouse(x, y, tcell.Button1, tcell.ModNone)
			s.sim.InjectMouse(x, y, tcell.ButtonNone, tcell.ModNone)
			return
		}
	}
	s.t.Fatalf("no %q on screen to click", text)
}

// styleOf returns the foreground colour of the first cell of text.
func (s *simUI) styleOf(text string) tcell.Color {
	s.t.Helper()
	for y, row := range s.screen() {
		if x := strings.Index(row, text); x >= 0 {
			ch := make(chan tcell.Color, 1)
			col := len([]rune(row[:x]))
			go s.u.app.QueueUpdate(func() {
				cells, w, _ := s.sim.GetContents()
				fg, _, _ := cells[y*w+col].Style.Decompose()
				ch <- fg
			})
			return <-ch
		}
	}
	s.t.Fatalf("no %q on screen", text)
	return 0
}

func TestUIConnectSelectExecuteInfoEditQuit(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "hello.py")
	os.WriteFile(src, []byte("import sys\nprint('hello from the tui')\nprint('oops on stderr', file=sys.stderr)\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	s := startUI(t, Options{Model: Config{Target: Target{Master: c.clientAddr, Bundle: c.bundle}}, Dir: dir})
	s.wait("F3 Select file", "F5 Execute", "F6 Edit", "F7 Info", "F10 Quit", "not connected")

	s.key(tcell.KeyF7)
	s.wait("Not connected.")

	s.key(tcell.KeyF2)
	s.wait("F2 Disconnect", "connected to "+c.clientAddr+" as alice")

	s.key(tcell.KeyF3)
	s.wait("Select a file", "In "+dir, "hello.py")
	if strings.Contains(strings.Join(s.screen(), "\n"), "notes.txt") {
		t.Error("the browser shows notes.txt among source files")
	}
	s.key(tcell.KeyF4)
	s.wait("notes.txt", "all files")
	s.key(tcell.KeyF4)
	s.wait("source files")
	s.key(tcell.KeyEnter) // the first file: hello.py
	s.wait("File: " + src)

	s.key(tcell.KeyF5)
	s.wait("hello from the tui", "oops on stderr", "hello.py: ok, exit code 0", "slave s1")
	if fg := s.styleOf("oops on stderr"); fg != tcell.ColorRed {
		t.Errorf("stderr colour %v, want red", fg)
	}
	if fg := s.styleOf("hello from the tui"); fg == tcell.ColorRed {
		t.Error("stdout shown in red like stderr")
	}

	s.key(tcell.KeyF7)
	s.wait("── Info ──", "1 slave(s)", "python ")

	s.key(tcell.KeyF6)
	s.wait("Editing "+src, "Ctrl-S Save")
	s.typeText("print('edited in kiln')\n")
	s.key(tcell.KeyCtrlS)
	s.wait("Saved " + src)
	b, _ := os.ReadFile(src)
	if !strings.HasPrefix(string(b), "print('edited in kiln')\nimport sys\n") {
		t.Fatalf("file after save: %q", b)
	}
	s.key(tcell.KeyF5)
	s.wait("edited in kiln")

	s.key(tcell.KeyF6) // edit, then cancel: Esc asks first, a second discards; the file stays as saved
	s.wait("Editing " + src)
	s.typeText("garbage")
	s.key(tcell.KeyEscape)
	s.wait("Unsaved changes: Esc again discards them, Ctrl-S saves", "Ctrl-S Save")
	s.key(tcell.KeyEscape)
	s.wait("F5 Execute")
	if b2, _ := os.ReadFile(src); string(b2) != string(b) {
		t.Errorf("cancelled edit changed the file: %q", b2)
	}

	s.key(tcell.KeyF10)
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatal(err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("F10 did not quit within 10 s")
	}
	if st := s.u.Model().State(); st.Conn == Connected {
		t.Error("still connected after quit")
	}
}

func TestUICancelLostReconnect(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	src := writeSource(t, "sleep.py", "import time\nprint('sleeping', flush=True)\ntime.sleep(30)\n")
	s := startUI(t, Options{Model: Config{Target: Target{Master: c.clientAddr, Bundle: c.bundle}, File: src}})
	s.wait("File: " + src)
	s.key(tcell.KeyF2)
	s.wait("F2 Disconnect")
	s.key(tcell.KeyF5)
	s.wait("sleeping", "running on s1", "Esc cancels")
	s.key(tcell.KeyEscape)
	s.wait("sleep.py: cancelled")

	c.restartMaster()
	s.wait("connection lost", "F2 Reconnect")
	s.key(tcell.KeyF2)
	s.wait("F2 Disconnect", "connected to")
	s.key(tcell.KeyF7)
	s.wait("1 slave(s)")
}

func TestUIRefusalAndBundleBrowse(t *testing.T) {
	c := newCluster(t)
	c.revoke("alice")
	s := startUI(t, Options{Model: Config{Target: Target{Master: c.clientAddr}}, Dir: c.dir})
	s.key(tcell.KeyF2)
	s.wait("no bundle")
	// Choose the bundle in the UI: Browse… shows every file.
	s.click("Browse…") // the mouse works
	s.wait("alice.bundle", "all files")
	time.Sleep(tview.DoubleClickInterval + 100*time.Millisecond) // two quick clicks are a double click
	s.click("alice.bundle")
	s.wait("Bundle " + c.dir) // the field is narrower than the path
	s.key(tcell.KeyF2)
	s.wait("Could not connect", "revoked")
}

// TestUIConsoleFollows fills the console past its height: the newest line
// stays in view; scrolled up, the view stays where the user put it.
func TestUIConsoleFollows(t *testing.T) {
	s := startUI(t, Options{})
	for i := range 60 {
		line := Line{Kind: Note, Text: fmt.Sprintf("line %02d of the console", i)}
		s.u.app.QueueUpdateDraw(func() { s.u.print(line) })
	}
	s.wait("line 59 of the console")
	s.u.app.QueueUpdateDraw(func() { s.u.app.SetFocus(s.u.console) })
	for range 30 {
		s.key(tcell.KeyUp)
	}
	s.wait("line 20 of the console")
	s.u.app.QueueUpdateDraw(func() { s.u.print(Line{Kind: Note, Text: "line 60 of the console"}) })
	if all := strings.Join(s.screen(), "\n"); strings.Contains(all, "line 60 of the console") || !strings.Contains(all, "line 20 of the console") {
		t.Errorf("scrolled up, the console jumped to new output:\n%s", all)
	}
}

// TestUIHelpOverlay: F1 (and ? outside text fields) shows every key; any
// key closes it; ? in the Address field is a character.
func TestUIHelpOverlay(t *testing.T) {
	s := startUI(t, Options{})
	s.u.app.QueueUpdateDraw(func() { s.u.app.SetFocus(s.u.console) })
	s.sim.InjectKey(tcell.KeyRune, '?', tcell.ModNone)
	s.wait("Keys — any key closes", "F6      edit it", "F1 or ?")
	gone := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); strings.Contains(strings.Join(s.screen(), "\n"), "any key closes"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the help did not close")
			}
		}
	}
	s.key(tcell.KeyEscape)
	gone()
	s.key(tcell.KeyF1)
	s.wait("Keys — any key closes")
	s.key(tcell.KeyEnter)
	gone()
	s.u.app.QueueUpdateDraw(func() { s.u.app.SetFocus(s.u.head.addr) })
	s.sim.InjectKey(tcell.KeyRune, '?', tcell.ModNone)
	s.wait("Address ?")
	if strings.Contains(strings.Join(s.screen(), "\n"), "any key closes") {
		t.Error("? in the Address field opened the help")
	}
}

// TestUIInputDialog: F9 takes the program's stdin and limits; a bad limit
// is refused in the dialog, a good one reaches the model.
func TestUIInputDialog(t *testing.T) {
	s := startUI(t, Options{})
	s.key(tcell.KeyF9)
	s.wait("Input for the next runs (F9)", "Standard input of the program", "Time limit")
	s.typeText("bob")
	s.key(tcell.KeyTab)
	s.typeText("2s")
	s.key(tcell.KeyTab)
	s.typeText("lots")
	s.key(tcell.KeyCtrlS)
	s.wait(`memory limit "lots": want a size such as 256MiB`)
	s.key(tcell.KeyBackspace2)
	s.key(tcell.KeyBackspace2)
	s.key(tcell.KeyBackspace2)
	s.key(tcell.KeyBackspace2)
	s.typeText("64MiB")
	s.key(tcell.KeyCtrlS)
	s.wait("Next runs: 3B of stdin; limits time 2s, memory 64MiB (the rest: the master's defaults).")
	if in := s.u.Model().GetInput(); in.Stdin != "bob" || in.Limits.TimeMs != 2000 || in.Limits.MemoryBytes != 64<<20 {
		t.Errorf("model input = %+v", in)
	}
}

// TestUIBrowserFilterAndPath: the file browser starts on the selected
// file; typing filters it, Enter picks the match; a typed path (with a
// slash) is opened with Enter.
func TestUIBrowserFilterAndPath(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"alpha.py", "beta.py", "gamma.c"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("print(1)\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startUI(t, Options{Model: Config{File: filepath.Join(dir, "beta.py")}})
	current := func() string {
		ch := make(chan string, 1)
		s.u.app.QueueUpdate(func() {
			main, _ := s.u.brow.list.GetItemText(s.u.brow.list.GetCurrentItem())
			ch <- main
		})
		return <-ch
	}
	s.key(tcell.KeyF3)
	s.wait("Select a file", "gamma.c")
	if c := current(); c != "beta.py" {
		t.Errorf("the browser starts on %q, want the selected beta.py", c)
	}
	s.typeText("gam")
	s.wait("filter gam")
	if all := strings.Join(s.screen(), "\n"); strings.Contains(all, "alpha.py") {
		t.Errorf("the filter left alpha.py:\n%s", all)
	}
	s.key(tcell.KeyEnter)
	for deadline := time.Now().Add(10 * time.Second); s.u.Model().State().File != filepath.Join(dir, "gamma.c"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Enter on the filtered list picked %q, want gamma.c", s.u.Model().State().File)
		}
	}
	s.wait("File: " + filepath.Join(dir, "gamma.c"))
	s.key(tcell.KeyF3)
	s.wait("Select a file")
	s.typeText("sub/")
	s.wait("Go to sub/ (Enter)")
	s.key(tcell.KeyEnter)
	s.wait("In " + filepath.Join(dir, "sub"))
	s.key(tcell.KeyEscape)
	s.wait("F5 Execute")
}
