package tui

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/client"
	"kiln/transport"
	"kiln/transport/wire"
)

// recorder is an Observer that keeps everything it is told.
type recorder struct {
	mu     sync.Mutex
	states []State
	text   strings.Builder
	kinds  map[Kind]*strings.Builder
}

func newRecorder() *recorder { return &recorder{kinds: map[Kind]*strings.Builder{}} }

func (r *recorder) Changed(s State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s)
}

func (r *recorder) Printed(l Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.text.WriteString(l.Text)
	if !strings.HasSuffix(l.Text, "\n") && l.Kind != Stdout && l.Kind != Stderr && l.Kind != Compile {
		r.text.WriteString("\n")
	}
	if r.kinds[l.Kind] == nil {
		r.kinds[l.Kind] = &strings.Builder{}
	}
	r.kinds[l.Kind].WriteString(l.Text)
}

func (r *recorder) console() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.text.String()
}

func (r *recorder) of(k Kind) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kinds[k] == nil {
		return ""
	}
	return r.kinds[k].String()
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func newModel(t *testing.T, c *cluster, file string) (*Model, *recorder) {
	t.Helper()
	rec := newRecorder()
	m := NewModel(Config{Target: Target{Master: c.clientAddr, Bundle: c.bundle}, File: file}, rec)
	t.Cleanup(m.Close)
	return m, rec
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestModelConnectExecute(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	src := writeSource(t, "hello.py", "import sys\nprint('hello from kiln')\nprint('to stderr', file=sys.stderr)\n")
	m, rec := newModel(t, c, src)
	ctx := ctxT(t)
	if _, err := m.Execute(ctx); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Execute before Connect: %v, want ErrNotConnected", err)
	}
	if err := m.Connect(ctx, m.State().Target); err != nil {
		t.Fatal(err)
	}
	st := m.State()
	if st.Conn != Connected || st.Name != "alice" || st.Version != "1.0" || st.Since.IsZero() {
		t.Fatalf("state after connect: %+v", st)
	}
	out, err := m.Execute(ctx)
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, rec.console())
	}
	if out.Result.Status != wire.StatusOK || out.Result.Slave != "s1" {
		t.Fatalf("result %+v", out.Result)
	}
	if got := rec.of(Stdout); !strings.Contains(got, "hello from kiln") {
		t.Errorf("stdout printed: %q", got)
	}
	if got := rec.of(Stderr); !strings.Contains(got, "to stderr") {
		t.Errorf("stderr printed: %q", got)
	}
	for _, want := range []string{"hello.py: ok, exit code 0", "slave s1", "wall ", "memory "} {
		if !strings.Contains(rec.console(), want) {
			t.Errorf("console lacks %q:\n%s", want, rec.console())
		}
	}
	if m.State().Running {
		t.Error("still running after Execute returned")
	}
	info, err := m.Info(ctx)
	if err != nil || info.Slaves != 1 {
		t.Fatalf("Info: %+v, %v", info, err)
	}
	if !strings.Contains(rec.console(), "python") || !strings.Contains(rec.console(), "Connected to "+c.clientAddr+" as alice") {
		t.Errorf("info console:\n%s", rec.console())
	}
	m.Disconnect()
	if m.State().Conn != Disconnected {
		t.Fatalf("after Disconnect: %v", m.State().Conn)
	}
	if _, err := m.Info(ctx); !errors.Is(err, ErrNotConnected) || !strings.Contains(rec.console(), "Not connected.") {
		t.Fatalf("Info when disconnected: %v\n%s", err, rec.console())
	}
}

func TestModelCompileErrorShowsLines(t *testing.T) {
	needLang(t, wire.LangC)
	c := newCluster(t)
	src := writeSource(t, "bad.c", "#include <stdio.h>\nint main(void) {\n\tprintf(\"x\")\n\treturn 0;\n}\n")
	m, rec := newModel(t, c, src)
	ctx := ctxT(t)
	if err := m.Connect(ctx, m.State().Target); err != nil {
		t.Fatal(err)
	}
	out, err := m.Execute(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Result.Status != wire.StatusCompileError {
		t.Fatalf("status %q", out.Result.Status)
	}
	con := rec.console()
	for _, want := range []string{"bad.c: compile error", "3 | ", `printf("x")`} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q:\n%s", want, con)
		}
	}
	if strings.Contains(con, "wall 0 ms") || strings.Contains(con, "cpu 0 ms") {
		t.Errorf("a compile error shows run figures of a program that never ran:\n%s", con)
	}
}

// TestCompileHintLines: the source lines a compiler names (javac quotes
// none) come one per line under their heading, not run together.
func TestCompileHintLines(t *testing.T) {
	rec := newRecorder()
	m := NewModel(Config{}, rec)
	t.Cleanup(m.Close)
	src := []byte("class Main {\n  int x = 1\n  void f() { y(); }\n}\n")
	out := "Main.java:2: error: ';' expected\n  int x = 1\n           ^\nMain.java:3: error: cannot find symbol\n"
	m.printResult("Main.java", src, client.Outcome{Result: wire.Result{Status: wire.StatusCompileError}, CompileOutput: []byte(out)})
	want := "Lines named by the compiler:\n    2 |   int x = 1\n    3 |   void f() { y(); }\n"
	if got := rec.of(Compile); got != want {
		t.Fatalf("compile hint block:\n%q\nwant\n%q", got, want)
	}
}

// TestInfoLines: Info names the master once and shows each language's
// limits.
func TestInfoLines(t *testing.T) {
	lines := InfoLines(wire.Info{Master: "master", Version: "0.1.0", Slaves: 1, FreeSlots: 2, Languages: []wire.LanguageInfo{{
		Language: "python", Compilers: []string{"Python 3.11"}, Slaves: 1, FreeSlots: 2,
		DefaultLimits: wire.JobLimits{TimeMs: 5000, MemoryBytes: 256 << 20, OutputBytes: 1 << 20},
		MaxLimits:     wire.JobLimits{TimeMs: 60000, MemoryBytes: 2 << 30, OutputBytes: 16 << 20}}}})
	text := strings.Join(lines, "\n")
	for _, want := range []string{`Master "master" (Kiln 0.1.0): 1 slave(s)`,
		"limits: by default time 5s, memory 256MiB, output 1MiB; at most time 1m0s, memory 2GiB, output 16MiB"} {
		if !strings.Contains(text, want) {
			t.Errorf("Info lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Master master version") {
		t.Errorf("Info reads %q", text)
	}
}

func TestModelCancel(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	src := writeSource(t, "loop.py", "import time\nprint('started', flush=True)\ntime.sleep(30)\n")
	m, rec := newModel(t, c, src)
	ctx := ctxT(t)
	if err := m.Connect(ctx, m.State().Target); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var out struct{ status string }
	go func() {
		o, err := m.Execute(ctx)
		out.status = o.Result.Status
		done <- err
	}()
	waitFor(t, "the program to start", func() bool { return strings.Contains(rec.of(Stdout), "started") })
	if _, err := m.Execute(ctx); !errors.Is(err, ErrBusy) {
		t.Errorf("second Execute: %v, want ErrBusy", err)
	}
	start := time.Now()
	if err := m.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if out.status != wire.StatusCancelled || time.Since(start) > 10*time.Second {
		t.Fatalf("status %q after %v", out.status, time.Since(start))
	}
	if !strings.Contains(rec.console(), "loop.py: cancelled") {
		t.Errorf("console:\n%s", rec.console())
	}
}

func TestModelRefusedInPlainWords(t *testing.T) {
	c := newCluster(t)
	m, rec := newModel(t, c, "")
	c.revoke("alice")
	err := m.Connect(ctxT(t), m.State().Target)
	var re *transport.RefusedError
	if !errors.As(err, &re) || re.Code != wire.CodeRevokedKey {
		t.Fatalf("Connect with a revoked key: %v", err)
	}
	if st := m.State(); st.Conn != Disconnected || st.Err != err.Error() {
		t.Fatalf("state %+v", st)
	}
	if !strings.Contains(rec.console(), "Could not connect: "+err.Error()) {
		t.Errorf("console:\n%s", rec.console())
	}
	if !strings.Contains(strings.ToLower(err.Error()), "revoked") {
		t.Errorf("refusal not in plain words: %q", err)
	}
}

func TestModelLostThenReconnect(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	src := writeSource(t, "hi.py", "print('again')\n")
	m, rec := newModel(t, c, src)
	ctx := ctxT(t)
	if err := m.Connect(ctx, m.State().Target); err != nil {
		t.Fatal(err)
	}
	c.restartMaster()
	waitFor(t, "the loss to show", func() bool { return m.State().Conn == Lost })
	if !strings.Contains(rec.console(), "Connection lost") {
		t.Errorf("console:\n%s", rec.console())
	}
	if err := m.Connect(ctx, m.State().Target); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Execute(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.of(Stdout), "again") {
		t.Errorf("stdout: %q", rec.of(Stdout))
	}
}

func TestModelSaveAtomic(t *testing.T) {
	path := writeSource(t, "a.py", "print(1)\n")
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	m := NewModel(Config{File: path}, newRecorder())
	defer m.Close()
	p, text, err := m.Load()
	if err != nil || p != path || text != "print(1)\n" {
		t.Fatalf("Load: %q %q %v", p, text, err)
	}
	if err := m.Save("print(2)\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fi, _ := os.Stat(path)
	if string(b) != "print(2)\n" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after Save: %q mode %v", b, fi.Mode())
	}
	entries, _ := os.ReadDir(strings.TrimSuffix(path, "/a.py"))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

func TestSourceLines(t *testing.T) {
	src := []byte("a\nb\nc\nd\n")
	cases := []struct{ out, want string }{
		{"/w/x.c:2:5: error: boom\n/w/x.c:4:1: note", "2 | b|4 | d"},
		{"X.java:3: error: ';' expected", ""},
		{"main.c:3:2: error: x\n    3 | c\nmain.c:1:1: note", "1 | a"},
		{`  File "x.py", line 3` + "\n", "3 | c"},
	}
	for _, tc := range cases {
		name := "x.c"
		if strings.Contains(tc.out, "x.py") {
			name = "x.py"
		}
		got := SourceLines([]byte(tc.out), name, src)
		var short []string
		for _, l := range got[min(1, len(got)):] {
			short = append(short, strings.TrimSpace(l))
		}
		if strings.Join(short, "|") != tc.want {
			t.Errorf("%q: got %q want %q", tc.out, short, tc.want)
		}
	}
}

func TestStatusLine(t *testing.T) {
	start := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	st := State{Conn: Connected, Target: Target{Master: "m:7400"}, Name: "alice", Role: "client", Version: "1.0", Since: start,
		Running: true, Phase: "uploading", Sent: 512, Total: 2048, JobStart: start}
	got := statusLine(st, start.Add(1500*time.Millisecond))
	for _, want := range []string{"connected", "m:7400 as alice (client 1.0) since 15:04:05", "uploading", "1.5s", "█████░░░", "25%", "Esc cancels"} {
		if !strings.Contains(got, want) {
			t.Errorf("status line %q lacks %q", got, want)
		}
	}
	lost := statusLine(State{Conn: Lost, Err: "EOF"}, start)
	if !strings.Contains(lost, "connection lost") || !strings.Contains(lost, "F2 reconnects") {
		t.Errorf("lost: %q", lost)
	}
}

// TestModelInputReachesProgram: the stdin set for the next runs is what
// the program reads.
func TestModelInputReachesProgram(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	src := writeSource(t, "readin.py", "print('hello ' + input())\n")
	m, rec := newModel(t, c, src)
	ctx := ctxT(t)
	if err := m.Connect(ctx, m.State().Target); err != nil {
		t.Fatal(err)
	}
	m.SetInput(Input{Stdin: "bob\n", Limits: wire.JobLimits{TimeMs: 3000}})
	out, err := m.Execute(ctx)
	if err != nil || out.Result.Status != wire.StatusOK || string(out.Stdout) != "hello bob\n" {
		t.Fatalf("Execute: %v, %+v, stdout %q\n%s", err, out.Result, out.Stdout, rec.console())
	}
}
