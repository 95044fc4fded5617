package tui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// Options configures a [UI].
type Options struct {
	Model Config
	// Screen to draw on; nil means the terminal.
	Screen tcell.Screen
	// Dir is where the file browser starts; "" means the current directory.
	Dir string
}

// UI is the terminal client: the screens wired to a [Model]. Create it
// with [New] and run it with [UI.Run].
type UI struct {
	app   *tview.Application
	m     *Model
	dir   string
	pages *tview.Pages

	head    *header
	tools   *toolbar
	console *tview.TextView
	file    *tview.TextView
	status  *tview.TextView
	brow    *browser
	edit    *editor
	in      *inputForm
	focus   []tview.Primitive // Tab order of the main page

	st State // the last state seen, owned by the event loop

	ctx     context.Context // cancelled on quit; actions run under it
	cancel  context.CancelFunc
	actions sync.WaitGroup // action goroutines

	mu     sync.Mutex
	queue  []func()      // widget changes waiting for the pump
	notify chan struct{} // cap 1: the queue grew
	stop   chan struct{} // closed to stop the pump and the ticker
	pumpWG sync.WaitGroup

	quitOnce sync.Once
	finished chan struct{} // closed when shutdown is complete
	runDone  chan struct{} // closed when the application's event loop has returned
}

// New builds the screens. It starts nothing.
func New(opts Options) *UI {
	dir := opts.Dir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	u := &UI{app: tview.NewApplication(), dir: dir, pages: tview.NewPages(),
		notify: make(chan struct{}, 1), stop: make(chan struct{}),
		finished: make(chan struct{}), runDone: make(chan struct{})}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.m = NewModel(opts.Model, (*observer)(u))
	u.st = u.m.State()
	if opts.Screen != nil {
		u.app.SetScreen(opts.Screen)
	}
	u.build()
	return u
}

// Model returns the UI's model.
func (u *UI) Model() *Model { return u.m }

// actions lists the buttons, in screen order.
func (u *UI) actionList() []action {
	return []action{
		{tcell.KeyF2, "Connect", u.toggleConnect},
		{tcell.KeyF3, "Select file", func() { u.openBrowser(false) }},
		{tcell.KeyF8, "Tests", u.openTests},
		{tcell.KeyF5, "Execute", u.execute},
		{tcell.KeyF6, "Edit", u.openEditor},
		{tcell.KeyF7, "Info", u.info},
		{tcell.KeyF9, "Input", u.openInput},
		{tcell.KeyEscape, "Cancel job", u.cancelJob},
		{tcell.KeyF10, "Quit", u.Quit},
	}
}

func (u *UI) build() {
	u.head = newHeader(u.st.Target, func() { u.openBrowser(true) })
	u.tools = newToolbar(u.actionList())
	u.console = newConsole()
	u.file = tview.NewTextView().SetDynamicColors(true)
	u.status = tview.NewTextView().SetDynamicColors(true)
	main := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(u.head, 1, 0, false).
		AddItem(nil, 1, 0, false).
		AddItem(u.tools, 1, 0, false).
		AddItem(u.file, 1, 0, false).
		AddItem(u.console, 0, 1, true).
		AddItem(u.status, 1, 0, false)
	main.SetBorder(true).SetTitle(" Kiln client ")
	u.pages.AddPage("main", main, true, true)
	u.focus = []tview.Primitive{u.head.addr, u.head.port, u.head.bundle, u.head.browse}
	for _, b := range u.tools.buttons {
		u.focus = append(u.focus, b)
	}
	u.focus = append(u.focus, u.console)
	u.app.SetRoot(u.pages, true).EnableMouse(true).SetInputCapture(u.keys)
	if u.st.Target.Master == "" {
		u.app.SetFocus(u.head.addr)
	} else {
		u.app.SetFocus(u.console)
	}
	u.render()
	u.print(Line{Kind: Note, Text: "Welcome to Kiln. F2 connects, F3 selects a file, F5 runs it; Tab moves between fields; the mouse works too."})
}

// keys handles the function keys, Tab and Ctrl-C before the focused widget.
func (u *UI) keys(ev *tcell.EventKey) *tcell.EventKey {
	front, _ := u.pages.GetFrontPage()
	switch ev.Key() {
	case tcell.KeyCtrlC, tcell.KeyF10:
		u.Quit()
		return nil
	}
	switch front {
	case "input":
		if ev.Key() == tcell.KeyEscape {
			u.closePage("input")
			return nil
		}
		if ev.Key() == tcell.KeyCtrlS {
			u.in.save()
			return nil
		}
		return ev
	case "help":
		u.closePage("help") // any key closes the help
		return nil
	case "editor":
		switch ev.Key() {
		case tcell.KeyCtrlS:
			u.saveEdit(u.edit.area.GetText())
			return nil
		case tcell.KeyEscape:
			u.edit.cancel()
			return nil
		}
		return ev
	case "browser":
		if ev.Key() == tcell.KeyF4 {
			u.brow.toggle()
			return nil
		}
		return ev
	}
	if ev.Key() == tcell.KeyF1 || ev.Key() == tcell.KeyRune && ev.Rune() == '?' && !u.typing() {
		u.openHelp()
		return nil
	}
	for _, a := range u.actionList() {
		if ev.Key() == a.key {
			a.do()
			return nil
		}
	}
	switch ev.Key() {
	case tcell.KeyTab:
		u.cycleFocus(1)
		return nil
	case tcell.KeyBacktab:
		u.cycleFocus(-1)
		return nil
	}
	return ev
}

func (u *UI) cycleFocus(step int) {
	cur := u.app.GetFocus()
	i := 0
	for j, p := range u.focus {
		if p == cur {
			i = j
		}
	}
	u.app.SetFocus(u.focus[(i+step+len(u.focus))%len(u.focus)])
}

// Run shows the UI until Quit, Ctrl-C, F10 or the end of ctx (a signal),
// then disconnects, waits for every goroutine it started and restores the
// terminal.
func (u *UI) Run(ctx context.Context) error {
	u.pumpWG.Add(2)
	go u.pump()
	go u.tick()
	stopWatch := context.AfterFunc(ctx, u.Quit)
	defer stopWatch()
	err := u.app.Run()
	close(u.runDone)
	u.Quit()
	<-u.finished
	return err
}

// Quit disconnects and stops the UI. It returns at once; Run returns when
// everything has stopped. It is idempotent.
func (u *UI) Quit() {
	u.quitOnce.Do(func() { go u.shutdown() })
}

// shutdown stops the actions and the model, lets the pump apply what is
// queued, then stops the application (which restores the terminal).
func (u *UI) shutdown() {
	defer close(u.finished)
	u.cancel()
	u.m.Close()
	u.actions.Wait()
	close(u.stop)
	u.pumpWG.Wait()
	u.app.Stop()
}

// do runs an action in a goroutine owned by the UI.
func (u *UI) do(f func(ctx context.Context)) {
	if u.ctx.Err() != nil {
		return
	}
	u.actions.Add(1)
	go func() {
		defer u.actions.Done()
		f(u.ctx)
	}()
}

// observer is how the model reaches the UI: it queues widget changes for
// the pump and never blocks.
type observer UI

func (o *observer) Changed(s State) { (*UI)(o).enqueue(func() { (*UI)(o).st = s; (*UI)(o).render() }) }
func (o *observer) Printed(l Line)  { (*UI)(o).enqueue(func() { (*UI)(o).print(l) }) }

func (u *UI) enqueue(f func()) {
	u.mu.Lock()
	u.queue = append(u.queue, f)
	u.mu.Unlock()
	select {
	case u.notify <- struct{}{}:
	default:
	}
}

// pump applies queued changes in the event loop, in order, until stop;
// then it applies what is left.
func (u *UI) pump() {
	defer u.pumpWG.Done()
	for {
		select {
		case <-u.notify:
			u.flush()
		case <-u.stop:
			u.flush()
			return
		}
	}
}

func (u *UI) flush() {
	u.mu.Lock()
	q := u.queue
	u.queue = nil
	u.mu.Unlock()
	if len(q) == 0 {
		return
	}
	// QueueUpdateDraw blocks until the event loop runs f, forever if the
	// loop ended on its own (the terminal went away): then the helper
	// goroutine is abandoned, and the process is about to exit.
	done := make(chan struct{})
	go func() {
		u.app.QueueUpdateDraw(func() {
			for _, f := range q {
				f()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-u.runDone:
	}
}

// tick refreshes the status line twice a second while a job runs, for its
// elapsed time.
func (u *UI) tick() {
	defer u.pumpWG.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if u.m.State().Running {
				u.enqueue(u.render)
			}
		case <-u.stop:
			return
		}
	}
}

// print appends a line to the console, which follows it while the user
// has not scrolled up (at the bottom, it follows again). Event loop only.
func (u *UI) print(l Line) {
	_, _, _, h := u.console.GetInnerRect()
	row, _ := u.console.GetScrollOffset()
	atBottom := row+h >= u.console.GetWrappedLineCount()
	fmt.Fprint(u.console, consoleText(l))
	if atBottom {
		u.console.ScrollToEnd()
	}
}

// render shows u.st in the file line, the status line and the Connect
// button. Event loop only.
func (u *UI) render() {
	st := u.st
	file := "[gray]none — press F3 to select one"
	if st.File != "" {
		file = "[white]" + tview.Escape(st.File)
	}
	if st.Tests != "" {
		file += "[-]   Tests: [white]" + tview.Escape(st.Tests)
	}
	u.file.SetText(" File: " + file)
	label := "Connect"
	switch st.Conn {
	case Connected:
		label = "Disconnect"
	case Lost:
		label = "Reconnect"
	}
	u.tools.setLabel(0, label)
	u.status.SetText(statusLine(st, u.m.cfg.Now()))
}

// statusLine is the bottom line: connection, then the running job.
func statusLine(st State, now time.Time) string {
	var b strings.Builder
	switch st.Conn {
	case Connected:
		fmt.Fprintf(&b, "[green]● connected[-] to %s as %s (%s %s) since %s", st.Target.Master, tview.Escape(st.Name),
			st.Role, tview.Escape(st.Version), st.Since.Format("15:04:05"))
	case Connecting:
		fmt.Fprintf(&b, "[yellow]● connecting[-] to %s", st.Target.Master)
	case Lost:
		fmt.Fprintf(&b, "[red]● connection lost[-] (%s) — F2 reconnects", tview.Escape(st.Err))
	default:
		b.WriteString("[gray]● not connected[-]")
		if st.Err != "" {
			fmt.Fprintf(&b, " — [red]%s[-]", tview.Escape(st.Err))
		}
	}
	if !st.Running {
		return b.String()
	}
	elapsed := now.Sub(st.JobStart).Truncate(100 * time.Millisecond)
	fmt.Fprintf(&b, "  │  [yellow]%s[-] %s", st.Phase, elapsed)
	if st.Phase == "uploading" && st.Total > 0 {
		fmt.Fprintf(&b, " %s %d%%", bar(st.Sent, st.Total, 20), st.Sent*100/st.Total)
	}
	b.WriteString(" — Esc cancels")
	return b.String()
}

// bar draws a progress bar of width cells.
func bar(done, total int64, width int) string {
	n := int(done * int64(width) / max(total, 1))
	return strings.Repeat("█", n) + strings.Repeat("░", width-n)
}

// toggleConnect is F2: connect, or disconnect when connected.
func (u *UI) toggleConnect() {
	if u.st.Conn == Connected {
		u.m.Disconnect()
		return
	}
	t := u.head.target()
	u.do(func(ctx context.Context) { u.m.Connect(ctx, t) })
}

func (u *UI) execute() { u.do(func(ctx context.Context) { u.m.Execute(ctx) }) }
func (u *UI) info()    { u.do(func(ctx context.Context) { u.m.Info(ctx) }) }

func (u *UI) cancelJob() {
	u.do(func(ctx context.Context) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		u.m.Cancel(ctx)
	})
}

// openBrowser is F3 (a source file) or Browse… (a bundle: all files).
func (u *UI) openBrowser(forBundle bool) {
	dir := u.dir
	if cur := u.st.File; cur != "" && !forBundle {
		dir = filepath.Dir(cur)
	}
	pick := func(path string) {
		u.closePage("browser")
		if forBundle {
			u.head.bundle.SetText(path)
			return
		}
		if err := u.m.Select(path); err != nil {
			u.print(Line{Kind: Failure, Text: err.Error()})
		}
	}
	u.brow = newBrowser(dir, forBundle, pick, func() { u.closePage("browser") })
	if cur := u.st.File; cur != "" && !forBundle && filepath.Dir(cur) == dir {
		u.brow.want = filepath.Base(cur)
		u.brow.load()
	}
	u.pages.AddPage("browser", centered(u.brow, 100, 26), true, true)
	u.app.SetFocus(u.brow.list)
}

// openTests is F8: pick a tests folder (or none) for F5 to judge on.
func (u *UI) openTests() {
	dir := u.dir
	if cur := u.st.Tests; cur != "" {
		dir = cur
	} else if cur := u.st.File; cur != "" {
		dir = filepath.Dir(cur)
	}
	pick := func(path string) {
		u.closePage("browser")
		u.do(func(context.Context) { u.m.SelectTests(path) })
	}
	u.brow = newBrowser(dir, false, pick, func() { u.closePage("browser") })
	u.brow.folders()
	u.pages.AddPage("browser", centered(u.brow, 100, 26), true, true)
	u.app.SetFocus(u.brow.list)
}

// openEditor is F6: the selected file in the editor pane.
func (u *UI) openEditor() {
	path, text, err := u.m.Load()
	if err != nil {
		return // printed by the model
	}
	u.edit = newEditor(path, text, u.saveEdit, func() { u.closePage("editor") })
	u.pages.AddPage("editor", u.edit, true, true)
	u.app.SetFocus(u.edit.area)
}

func (u *UI) saveEdit(text string) {
	if err := u.m.Save(text); err == nil {
		u.closePage("editor")
	}
}

func (u *UI) closePage(name string) {
	u.pages.RemovePage(name)
	u.app.SetFocus(u.console)
}

// typing reports whether the focus is on a field that takes text, where
// '?' is a character rather than the help key.
func (u *UI) typing() bool {
	switch u.app.GetFocus().(type) {
	case *tview.InputField, *tview.TextArea:
		return true
	}
	return false
}

// openHelp is F1 (or '?' outside text fields): every key of the client in
// a centered box; any key closes it.
func (u *UI) openHelp() {
	tv := tview.NewTextView().SetDynamicColors(true).SetText(helpText)
	tv.SetBorder(true).SetTitle(" Keys — any key closes ")
	u.pages.AddPage("help", centered(tv, 66, 22), true, true)
	u.app.SetFocus(tv)
}

// helpText lists the keys, as docs/client.md does.
const helpText = `[yellow]Actions[-] (also buttons: click, or Tab to one and Enter)
  F2      connect / disconnect / reconnect
  F3      select a source file (Enter opens, F4 all files)
  F8      select a tests folder
  F5      run the selected file on the cluster
  F6      edit it (Ctrl-S saves, Esc asks before discarding)
  F7      Info: the connection and what the cluster can run
  F9      the program's stdin and limits for the next runs
  Esc     cancel the running job
  F10     quit (also Ctrl-C)
[yellow]Moving around[-]
  Tab, Shift-Tab      next / previous field or button
  ↑ ↓ PgUp PgDn       scroll the console (at the bottom it follows)
  Home End            top / bottom of the console
  F1 or ?             this help (? outside text fields)
`

// openInput is F9: the program's stdin and the limits it asks for, for the
// next runs.
func (u *UI) openInput() {
	u.in = newInputForm(u.m.GetInput(), func(in Input) {
		u.m.SetInput(in)
		u.closePage("input")
	}, func(err error) { u.in.setError(err) }, func(p tview.Primitive) { u.app.SetFocus(p) })
	u.pages.AddPage("input", centered(u.in, 72, 20), true, true)
	u.app.SetFocus(u.in.stdin)
}
