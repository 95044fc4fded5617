package tui

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gdamore/tcell/v2"

	"kiln/transport/wire"
)

// With a tests folder selected, Execute judges the file on every test and
// prints a row per verdict, then passed/total; a bad folder is refused.
func TestModelTests(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	src := writeSource(t, "double.py", "print(2 * int(input()))\n")
	dir := filepath.Join(t.TempDir(), "tests")
	os.Mkdir(dir, 0o700)
	for name, body := range map[string]string{"1.in": "1", "1.out": "2", "2.in": "5", "2.ans": "11"} {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600)
	}
	m, rec := newModel(t, c, src)
	ctx := ctxT(t)
	if err := m.Connect(ctx, m.State().Target); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "3.in"), []byte("x"), 0o600)
	if err := m.SelectTests(bad); err == nil || !strings.Contains(rec.of(Failure), "3.in has no 3.out or 3.ans") {
		t.Fatalf("bad folder: %v\n%s", err, rec.console())
	}
	if err := m.SelectTests(dir); err != nil || m.State().Tests != dir {
		t.Fatalf("SelectTests: %v %+v", err, m.State())
	}
	out, err := m.Execute(ctx)
	if err != nil {
		t.Fatalf("Execute: %v\n%s", err, rec.console())
	}
	if out.Result.Tests == nil || out.Result.Tests.Passed != 1 || len(out.Tests) != 2 {
		t.Fatalf("outcome %+v %+v", out.Result, out.Tests)
	}
	con := rec.console()
	for _, want := range []string{"Tests: 2 from", "1  1            accepted", "2  2            wrong_answer", `expected "11", got "10"`, "double.py: passed 1/2 (wrong_answer)"} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q:\n%s", want, con)
		}
	}
	if err := m.SelectTests(""); err != nil || m.State().Tests != "" {
		t.Fatalf("clearing the tests: %v", err)
	}
	out, err = m.Execute(ctx)
	if err != nil || out.Result.Tests != nil {
		t.Fatalf("a single run after clearing: %v %+v", err, out.Result)
	}
}

// F8 picks a tests folder in the browser; F5 then fills a table of
// verdicts in the console.
func TestUITests(t *testing.T) {
	needLang(t, wire.LangPython)
	c := newCluster(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "double.py")
	os.WriteFile(src, []byte("print(2 * int(input()))\n"), 0o644)
	tests := filepath.Join(dir, "cases")
	os.Mkdir(tests, 0o700)
	os.WriteFile(filepath.Join(tests, "a.in"), []byte("4"), 0o600)
	os.WriteFile(filepath.Join(tests, "a.out"), []byte("8"), 0o600)
	s := startUI(t, Options{Model: Config{Target: Target{Master: c.clientAddr, Bundle: c.bundle}, File: src}, Dir: dir})
	s.wait("F8 Tests", "F5 Execute")
	s.key(tcell.KeyF2)
	s.wait("connected to " + c.clientAddr)
	s.key(tcell.KeyF8)
	s.wait("Select a tests folder", "Use this folder", "In "+dir, "cases/")
	for range 3 { // past "Use this folder", "No tests" and "../"
		s.key(tcell.KeyDown)
	}
	s.key(tcell.KeyEnter)
	s.wait("In " + tests)
	s.key(tcell.KeyEnter) // the first item: use this folder
	s.wait("Tests: "+tests, "Tests: 1 from")
	s.key(tcell.KeyF5)
	s.wait("accepted", "double.py: passed 1/1 (accepted)")
}
