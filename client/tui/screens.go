package tui

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"

	"kiln/limits"
	"kiln/transport/wire"
)

// Screens are small constructors taking callbacks. They build widgets and
// wire their events; they never call the model or start goroutines.

// header is the connection form: address, port and bundle.
type header struct {
	*tview.Flex
	addr, port, bundle *tview.InputField
	browse             *tview.Button
}

func newHeader(t Target, onBrowse func()) *header {
	host, port := SplitMaster(t.Master)
	h := &header{
		addr:   tview.NewInputField().SetLabel("Address ").SetText(host).SetFieldWidth(24),
		port:   tview.NewInputField().SetLabel(" Port ").SetText(port).SetFieldWidth(6).SetAcceptanceFunc(tview.InputFieldInteger),
		bundle: tview.NewInputField().SetLabel(" Bundle ").SetText(t.Bundle),
		browse: tview.NewButton("Browse…").SetSelectedFunc(onBrowse),
	}
	h.Flex = tview.NewFlex().
		AddItem(h.addr, 32, 0, false).
		AddItem(h.port, 12, 0, false).
		AddItem(h.bundle, 0, 1, false).
		AddItem(h.browse, 10, 0, false)
	return h
}

// target reads the form.
func (h *header) target() Target {
	host := strings.TrimSpace(h.addr.GetText())
	port := strings.TrimSpace(h.port.GetText())
	master := ""
	if host != "" {
		if port == "" {
			port = "7400"
		}
		master = strings.Trim(host, "[]")
		if strings.Contains(master, ":") {
			master = "[" + master + "]"
		}
		master += ":" + port
	}
	return Target{Master: master, Bundle: strings.TrimSpace(h.bundle.GetText())}
}

// action is one button and its function key.
type action struct {
	key   tcell.Key
	label string
	do    func()
}

// toolbar is the row of action buttons; each label shows its key.
type toolbar struct {
	*tview.Flex
	buttons []*tview.Button
	actions []action // their keys and current labels
}

func newToolbar(actions []action) *toolbar {
	tb := &toolbar{Flex: tview.NewFlex(), actions: slices.Clone(actions)}
	for i, a := range actions {
		b := tview.NewButton(buttonLabel(a)).SetSelectedFunc(a.do)
		tb.buttons = append(tb.buttons, b)
		if i > 0 {
			tb.AddItem(nil, 1, 0, false)
		}
		tb.AddItem(b, len(buttonLabel(a)), 0, false)
	}
	tb.AddItem(nil, 0, 1, false)
	return tb
}

// setLabel changes the label of button i (Connect, Disconnect, ...).
func (tb *toolbar) setLabel(i int, label string) {
	tb.actions[i].label = label
}

// shortLabels are the words of the buttons on a narrow screen.
var shortLabels = map[string]string{
	"Select file": "File", "Execute": "Run", "Tests": "Test", "Cancel job": "Cancel", "Disconnect": "Discon", "Reconnect": "Recon",
}

// Draw sizes each button to its label, whole, so that every button keeps
// its key: the full labels when they fit, shorter words when not, the
// keys alone on a very narrow screen.
func (tb *toolbar) Draw(screen tcell.Screen) {
	_, _, width, _ := tb.GetInnerRect()
	labels := make([]string, len(tb.actions))
	for variant := 0; variant < 3; variant++ {
		total := len(tb.actions) - 1
		for i, a := range tb.actions {
			switch variant {
			case 0:
				labels[i] = buttonLabel(a)
			case 1:
				if s, ok := shortLabels[a.label]; ok {
					a.label = s
				}
				labels[i] = buttonLabel(a)
			default:
				labels[i] = tcell.KeyNames[a.key]
			}
			total += len([]rune(labels[i]))
		}
		if total <= width {
			break
		}
	}
	for i, b := range tb.buttons {
		b.SetLabel(labels[i])
		tb.ResizeItem(b, len([]rune(labels[i])), 0)
	}
	tb.Flex.Draw(screen)
}

func buttonLabel(a action) string {
	return tcell.KeyNames[a.key] + " " + a.label
}

// newConsole is the read-only, scrollable console.
func newConsole() *tview.TextView {
	tv := tview.NewTextView().SetDynamicColors(true).SetScrollable(true).SetWrap(true).SetMaxLines(20000)
	tv.SetBorder(true).SetTitle(" Console (read-only; ↑↓ PgUp PgDn to scroll) ")
	return tv
}

// colors of console text by kind.
var colors = map[Kind]string{
	Note: "gray", Stdout: "white", Stderr: "red", Compile: "yellow",
	Success: "green::b", Failure: "red::b", Detail: "aqua",
}

// consoleText formats a line for a TextView with dynamic colours.
func consoleText(l Line) string {
	text := l.Text
	if l.Kind != Stdout && l.Kind != Stderr && l.Kind != Compile && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return "[" + colors[l.Kind] + "]" + tview.Escape(text) + "[-:-:-]"
}

// browser lists a directory: subdirectories, then source files (or all
// files), for picking one.
type browser struct {
	*tview.Flex
	list    *tview.List
	where   *tview.TextView
	help    *tview.TextView
	dir     string
	all     bool
	dirs    bool   // picking a folder (tests), not a file
	filter  string // typed: entries containing it; with a slash, a path to go to
	want    string // the entry to start on (the selected file's name)
	onPick  func(path string)
	onClose func()
}

// newBrowser starts in dir; with all unset it shows only .c, .cpp, .java
// and .py files (and the like, see wire.LanguageOf).
func newBrowser(dir string, all bool, onPick func(string), onClose func()) *browser {
	b := &browser{list: tview.NewList().ShowSecondaryText(false), where: tview.NewTextView(), help: tview.NewTextView(),
		dir: dir, all: all, onPick: onPick, onClose: onClose}
	b.list.SetDoneFunc(onClose)
	b.list.SetInputCapture(b.typed)
	b.help.SetText("type to filter or a path · Enter pick · F4 all files · Esc close")
	b.Flex = tview.NewFlex().SetDirection(tview.FlexRow).AddItem(b.where, 1, 0, false).
		AddItem(b.list, 0, 1, true).AddItem(b.help, 1, 0, false)
	b.SetBorder(true)
	b.load()
	return b
}

// typed handles what is typed into the list: letters filter it, a path
// (with a slash) is opened with Enter, Backspace and Esc undo the filter.
func (b *browser) typed(ev *tcell.EventKey) *tcell.EventKey {
	switch ev.Key() {
	case tcell.KeyRune:
		if r := ev.Rune(); r > ' ' {
			b.filter += string(r)
			b.load()
			return nil
		}
	case tcell.KeyBackspace, tcell.KeyBackspace2:
		if b.filter != "" {
			b.filter = b.filter[:len(b.filter)-1]
			b.load()
			return nil
		}
	case tcell.KeyEscape:
		if b.filter != "" {
			b.filter = ""
			b.load()
			return nil
		}
	case tcell.KeyEnter:
		if strings.ContainsRune(b.filter, '/') || strings.HasPrefix(b.filter, "~") {
			b.goTo(b.filter)
			return nil
		}
	}
	return ev
}

// goTo opens a typed path: a directory is listed, a file is picked.
func (b *browser) goTo(path string) {
	if rest, ok := strings.CutPrefix(path, "~"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			path = home + rest
		}
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.dir, path)
	}
	b.filter = ""
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		b.where.SetText("[red]" + tview.Escape(err.Error()) + "[-]")
	case fi.IsDir():
		b.cd(path)
	case b.dirs:
		b.cd(filepath.Dir(path))
	default:
		b.onPick(path)
	}
}

// toggle switches between source files only and all files.
func (b *browser) toggle() {
	b.all = !b.all
	b.load()
}

// load lists b.dir.
func (b *browser) load() {
	b.list.Clear()
	filter := "source files (.c .cpp .java .py)"
	if b.all {
		filter = "all files"
	}
	b.SetTitle(" Select a file — " + filter + " ")
	b.where.SetDynamicColors(true).SetText("In " + tview.Escape(b.dir))
	switch {
	case strings.ContainsRune(b.filter, '/') || strings.HasPrefix(b.filter, "~"):
		b.where.SetText("Go to [yellow]" + tview.Escape(b.filter) + "[-] (Enter)")
	case b.filter != "":
		b.where.SetText("In " + tview.Escape(b.dir) + " — filter [yellow]" + tview.Escape(b.filter) + "[-] (Backspace, Esc clears)")
	}
	if b.dirs {
		b.SetTitle(" Select a tests folder (NAME.in with NAME.out or NAME.ans) ")
		b.list.AddItem("[ Use this folder ]", "", 0, func() { b.onPick(b.dir) })
		b.list.AddItem("[ No tests: run the file once ]", "", 0, func() { b.onPick("") })
	}
	b.list.AddItem("../", "", 0, func() { b.cd(filepath.Dir(b.dir)) })
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		b.list.AddItem("("+err.Error()+")", "", 0, nil)
		return
	}
	var dirs, files []string
	match := strings.ToLower(b.filter)
	if strings.ContainsRune(match, '/') || strings.HasPrefix(match, "~") {
		match = ""
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
		case !strings.Contains(strings.ToLower(name), match):
		case e.IsDir():
			dirs = append(dirs, name)
		case b.dirs:
		case b.all || wire.LanguageOf(name) != "":
			files = append(files, name)
		}
	}
	slices.Sort(dirs)
	slices.Sort(files)
	for _, d := range dirs {
		b.list.AddItem(d+"/", "", 0, func() { b.cd(filepath.Join(b.dir, d)) })
	}
	for _, f := range files {
		b.list.AddItem(f, "", 0, func() { b.onPick(filepath.Join(b.dir, f)) })
	}
	first := b.list.GetItemCount() - len(dirs) - len(files) // the first entry after ../ and the folder choices
	if len(dirs)+len(files) > 0 && !b.dirs {
		b.list.SetCurrentItem(first)
	}
	for i, f := range files {
		if f == b.want && b.filter == "" {
			b.list.SetCurrentItem(first + len(dirs) + i) // start on the selected file
		}
	}
	if len(files) > 0 && b.filter != "" && !b.dirs {
		b.list.SetCurrentItem(first + len(dirs)) // the first file that matches
	}
}

// folders makes the browser pick a folder instead of a file.
func (b *browser) folders() {
	b.dirs = true
	b.help.SetText("Enter open · \"Use this folder\" selects it · Esc close")
	b.load()
}

func (b *browser) cd(dir string) {
	b.dir = dir
	b.load()
}

// editor is the editing pane: a text area with Save and Cancel inside one
// frame. Cancel (or Esc) with unsaved changes asks first: a second one
// discards them.
type editor struct {
	*tview.Flex
	area     *tview.TextArea
	path     string
	orig     string
	asked    bool // the last Cancel asked about unsaved changes
	onCancel func()
}

func newEditor(path, text string, onSave func(text string), onCancel func()) *editor {
	e := &editor{area: tview.NewTextArea().SetText(text, false), path: path, orig: text, onCancel: onCancel}
	save := tview.NewButton("Ctrl-S Save").SetSelectedFunc(func() { onSave(e.area.GetText()) })
	cancel := tview.NewButton("Esc Cancel").SetSelectedFunc(e.cancel)
	buttons := tview.NewFlex().AddItem(save, 14, 0, false).AddItem(nil, 1, 0, false).AddItem(cancel, 14, 0, false).AddItem(nil, 0, 1, false)
	e.Flex = tview.NewFlex().SetDirection(tview.FlexRow).AddItem(e.area, 0, 1, true).AddItem(buttons, 1, 0, false)
	e.Flex.SetBorder(true)
	e.area.SetChangedFunc(func() {
		if e.asked {
			e.asked = false
			e.title()
		}
	})
	e.title()
	return e
}

func (e *editor) title() {
	if e.asked {
		e.Flex.SetTitle(" [yellow]Unsaved changes: Esc again discards them, Ctrl-S saves[-] ").SetTitleColor(tcell.ColorYellow)
		return
	}
	e.Flex.SetTitle(" Editing " + tview.Escape(e.path) + " — Ctrl-S save · Esc cancel ").SetTitleColor(tview.Styles.TitleColor)
}

// cancel closes the editor, or asks first when the text was changed.
func (e *editor) cancel() {
	if e.area.GetText() != e.orig && !e.asked {
		e.asked = true
		e.title()
		return
	}
	e.onCancel()
}

// centered puts p in the middle of the screen, for dialogs: width by
// height cells, or the whole screen when it is smaller (an 80x24 terminal).
func centered(p tview.Primitive, width, height int) tview.Primitive {
	col := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(nil, 0, 1, false).
		AddItem(p, height, 0, true).
		AddItem(nil, 0, 1, false)
	row := tview.NewFlex().
		AddItem(nil, 0, 1, false).
		AddItem(col, width, 0, true).
		AddItem(nil, 0, 1, false)
	return &fitted{Flex: row, col: col, p: p, width: width, height: height}
}

// fitted is a centered dialog that shrinks to the screen.
type fitted struct {
	*tview.Flex
	col           *tview.Flex
	p             tview.Primitive
	width, height int
}

// Draw sizes the dialog to the screen, then draws it.
func (f *fitted) Draw(screen tcell.Screen) {
	sw, sh := screen.Size()
	f.Flex.ResizeItem(f.col, min(f.width, sw), 0)
	f.col.ResizeItem(f.p, min(f.height, sh), 0)
	f.Flex.Draw(screen)
}

// inputForm edits the stdin and limits of the next runs: a text area for
// stdin, three fields for the limits (empty: the master's default), Save
// (Ctrl-S) and Cancel (Esc).
type inputForm struct {
	*tview.Flex
	stdin                *tview.TextArea
	time, memory, output *tview.InputField
	msg                  *tview.TextView
	onSave               func(Input)
	onErr                func(error)
	focus                func(tview.Primitive)
}

func newInputForm(in Input, onSave func(Input), onErr func(error), focus func(tview.Primitive)) *inputForm {
	f := &inputForm{stdin: tview.NewTextArea().SetText(in.Stdin, false), onSave: onSave, onErr: onErr, focus: focus,
		msg: tview.NewTextView().SetDynamicColors(true)}
	f.stdin.SetBorder(true).SetTitle(" Standard input of the program ")
	field := func(label, v string) *tview.InputField {
		return tview.NewInputField().SetLabel(label).SetText(v).SetFieldWidth(12)
	}
	show := func(field string, v int64) string {
		if v == 0 {
			return ""
		}
		return limits.Format(field, v)
	}
	f.time = field("Time limit ", show("time", in.Limits.TimeMs))
	f.memory = field("  Memory ", show("memory", in.Limits.MemoryBytes))
	f.output = field("  Output ", show("output", in.Limits.OutputBytes))
	row := tview.NewFlex().AddItem(f.time, 0, 1, false).AddItem(f.memory, 0, 1, false).AddItem(f.output, 0, 1, false)
	save := tview.NewButton("Ctrl-S Save").SetSelectedFunc(f.save)
	buttons := tview.NewFlex().AddItem(save, 13, 0, false).AddItem(nil, 1, 0, false).
		AddItem(tview.NewTextView().SetText("Esc cancel · empty limits: the master's defaults (F7 shows them)"), 0, 1, false)
	f.Flex = tview.NewFlex().SetDirection(tview.FlexRow).AddItem(f.stdin, 0, 1, true).AddItem(row, 1, 0, false).
		AddItem(f.msg, 1, 0, false).AddItem(buttons, 1, 0, false)
	f.Flex.SetBorder(true).SetTitle(" Input for the next runs (F9) ")
	f.Flex.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		if ev.Key() == tcell.KeyTab || ev.Key() == tcell.KeyBacktab {
			f.cycle(ev.Key() == tcell.KeyTab)
			return nil
		}
		return ev
	})
	return f
}

// cycle moves the focus among the text area, the fields and Save.
func (f *inputForm) cycle(forward bool) {
	items := []tview.Primitive{f.stdin, f.time, f.memory, f.output}
	cur := 0
	for i, p := range items {
		if p.HasFocus() {
			cur = i
		}
	}
	step := 1
	if !forward {
		step = len(items) - 1
	}
	f.focus(items[(cur+step)%len(items)])
}

// save parses the fields and hands the input over, or says what is wrong.
func (f *inputForm) save() {
	var in Input
	in.Stdin = f.stdin.GetText()
	if v := strings.TrimSpace(f.time.GetText()); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			f.onErr(fmt.Errorf("time limit %q: want a duration such as 5s or 1m", v))
			return
		}
		in.Limits.TimeMs = d.Milliseconds()
	}
	for _, x := range []struct {
		name  string
		field *tview.InputField
		dst   *int64
	}{{"memory", f.memory, &in.Limits.MemoryBytes}, {"output", f.output, &in.Limits.OutputBytes}} {
		if v := strings.TrimSpace(x.field.GetText()); v != "" {
			n, err := limits.ParseSize(v)
			if err != nil || n <= 0 {
				f.onErr(fmt.Errorf("%s limit %q: want a size such as 256MiB or 1GiB", x.name, v))
				return
			}
			*x.dst = n
		}
	}
	f.onSave(in)
}

func (f *inputForm) setError(err error) {
	f.msg.SetText("[red]" + tview.Escape(err.Error()) + "[-]")
}
