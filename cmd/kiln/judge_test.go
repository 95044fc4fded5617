package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln/client"
	"kiln/internal/testenv"
	"kiln/slave"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// startSlaveWith runs a real slave with the built-in languages plus
// extra, until the test ends, and waits until it registered.
func (c *sealedCluster) startSlaveWith(name string, extra []slave.LanguageSpec) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	specs := slave.MergeLanguages(slave.BuiltinLanguages(), extra)
	tcs, _ := slave.DetectLanguages(ctx, specs)
	exe, err := slave.NewExecutor(slave.ExecConfig{Name: name, WorkRoot: c.t.TempDir(), Runner: &sandbox.Plain{},
		Toolchains: tcs, Languages: specs})
	if err != nil {
		c.t.Fatal(err)
	}
	c.runSlave(ctx, cancel, name, exe, nil)
}

// A sealed test batch through a real master and slave: every verdict
// comes back, and no case's input or expected output crosses the master
// in the clear.
func TestSealedBatchEndToEnd(t *testing.T) {
	testenv.Command(t, "g++")
	c := newSealedCluster(t)
	c.startSlave("s1", nil)
	src := `#include <iostream>
#include <string>
int main() { std::string s; std::cin >> s; std::cout << s << "-ok" << std::endl; }
`
	var cases []client.TestCase
	for i := range 10 {
		in := fmt.Sprintf("case-marker-%02d-7f3a", i)
		want := in + "-ok\n"
		if i == 4 {
			want = "expected-marker-4-9c1d\n"
		}
		cases = append(cases, client.TestCase{Stdin: []byte(in), Expected: []byte(want)})
	}
	for _, sealed := range []bool{true, false} {
		c.rec.reset()
		out, err := c.run(client.Request{FileName: "echo.cpp", Source: []byte(src), Seal: sealed,
			Tests: &client.Tests{Cases: cases}})
		if err != nil {
			t.Fatalf("sealed=%v: %v", sealed, err)
		}
		if out.Result.Status != wire.StatusOK || out.Result.Tests == nil || out.Result.Tests.Passed != 9 || len(out.Tests) != 10 {
			t.Fatalf("sealed=%v: %+v %+v", sealed, out.Result, out.Result.Tests)
		}
		for i, v := range out.Tests {
			if want := map[bool]string{true: wire.TestWrongAnswer, false: wire.TestAccepted}[i == 4]; v.Status != want || v.Index != i {
				t.Errorf("sealed=%v: test %d %+v, want %s", sealed, i, v, want)
			}
		}
		for _, s := range []string{"case-marker-03-7f3a", "expected-marker-4-9c1d"} {
			if seen := c.rec.contains(s); seen == sealed {
				t.Errorf("sealed=%v: %q seen by the master: %v", sealed, s, seen)
			}
		}
	}
}

// A language that exists only in a languages file runs end to end: the
// slave announces it, the client finds it by its extension through Info,
// the master checks it against the registration.
func TestConfiguredLanguageEndToEnd(t *testing.T) {
	testenv.Command(t, "bash")
	specs, err := slave.ParseLanguages("test.json", []byte(`{"languages": [{
		"name": "bash", "extensions": [".sh"],
		"detect": {"tools": ["/bin/bash", "bash"], "version": ["--version"]},
		"source": {"name": "main.sh"}, "run": ["{tool}", "{src}"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c := newSealedCluster(t)
	c.startSlaveWith("s1", specs)
	out, err := c.run(client.Request{FileName: "double.sh", Source: []byte("read n; echo $((n * 2))\n"), Stdin: []byte("21\n"), Seal: true})
	if err != nil || out.Result.Status != wire.StatusOK || string(out.Stdout) != "42\n" || out.Result.Language != "bash" ||
		!strings.HasPrefix(out.Result.Compiler, "GNU bash") {
		t.Fatalf("%v %+v stdout %q", err, out.Result, out.Stdout)
	}
	// And a batch of it, with the tokens compare mode.
	out, err = c.run(client.Request{FileName: "double.sh", Source: []byte("read n; echo \"$((n * 2)).0000001\"\n"),
		Tests: &client.Tests{Compare: wire.CompareTokens, AbsTol: 1e-6, Cases: []client.TestCase{
			{Stdin: []byte("1"), Expected: []byte("2")}, {Stdin: []byte("5"), Expected: []byte("10.5")}}}})
	if err != nil || len(out.Tests) != 2 || out.Tests[0].Status != wire.TestAccepted || out.Tests[1].Status != wire.TestWrongAnswer {
		t.Fatalf("%v %+v %+v", err, out.Result, out.Tests)
	}
}

// kiln run --tests: a table of verdicts, a summary line, the exit code of
// a failed batch, --json with every test, and a bad tests folder refused
// before anything is dialled.
func TestRunTestsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master process")
	}
	testenv.Command(t, "gcc")
	testenv.Command(t, "python3")
	c := startLocalCluster(t, "2")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	src := t.TempDir()
	prog := writeFile(t, src, "sum.c", "#include <stdio.h>\nint main(void){long a,b; if(scanf(\"%ld %ld\",&a,&b)!=2) return 3; printf(\"%ld\\n\", a+b); return 0;}\n")
	tests := filepath.Join(src, "tests")
	os.Mkdir(tests, 0o700)
	for i, tc := range []struct{ in, out string }{{"1 2", "3"}, {"2 2", "4  \r\n\n"}, {"5 5", "11"}, {"7 1", "8"}} {
		writeFile(t, tests, fmt.Sprintf("%d.in", i+1), tc.in)
		ext := ".out"
		if i == 3 {
			ext = ".ans"
		}
		writeFile(t, tests, fmt.Sprintf("%d%s", i+1, ext), tc.out)
	}
	code, out, errs := runCLI(ctx, t, c.env, "run", "--tests", tests, prog)
	if code != exitTestsFailed || !strings.Contains(errs, "passed 3/4, wrong_answer (first: test 3 3)") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
	for _, want := range []string{"TEST", "accepted", `wrong_answer   `, `line 1: expected "11", got "10"`} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 5 {
		t.Errorf("table has %d lines, want a header and 4 rows:\n%s", n, out)
	}
	// --json with per-test results, and a Python checker that accepts
	// answers within 1.
	checker := writeFile(t, src, "near.py", "import sys\nexp, out = open(sys.argv[2]).read(), open(sys.argv[3]).read()\nsys.exit(42 if abs(int(exp) - int(out)) <= 1 else 43)\n")
	code, out, errs = runCLI(ctx, t, c.env, "run", "--json", "--tests", tests, "--checker", checker, prog)
	var r testsJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 {
		t.Fatalf("--json: exit %d, %v\n%s\n%s", code, err, out, errs)
	}
	if r.Summary == nil || r.Summary.Passed != 4 || len(r.Tests) != 4 || r.Tests[2].Name != "3" || r.Tests[2].Status != wire.TestAccepted || r.Language != "c" {
		t.Errorf("--json = %+v", r)
	}
	// --stop-on-first-failure with --compare exact: the CRLF of test 2 fails it.
	code, out, _ = runCLI(ctx, t, c.env, "run", "--json", "--compare", "exact", "--stop-on-first-failure", "--tests", tests, prog)
	r = testsJSON{}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != exitTestsFailed || r.Tests[1].Status != wire.TestWrongAnswer {
		t.Fatalf("exact: exit %d %v %+v", code, err, r)
	}
	// A bad tests folder is refused before anything is sent.
	bad := filepath.Join(src, "bad")
	os.Mkdir(bad, 0o700)
	writeFile(t, bad, "1.in", "1 2")
	writeFile(t, bad, "1.out", "3")
	writeFile(t, bad, "2.in", "3 4")
	code, _, errs = runCLI(ctx, t, map[string]string{"KILN_BUNDLE": c.env["KILN_BUNDLE"], "KILN_MASTER": freeAddr(t)}, "run", "--tests", bad, prog)
	if code != exitUsage || !strings.Contains(errs, "2.in has no 2.out or 2.ans") {
		t.Fatalf("bad folder: exit %d, stderr %q", code, errs)
	}
	code, _, errs = runCLI(ctx, t, c.env, "run", "--tests", tests, "--compare", "fuzzy", prog)
	if code != exitUsage || !strings.Contains(errs, `--compare "fuzzy"`) {
		t.Fatalf("bad mode: exit %d, stderr %q", code, errs)
	}
}

// kiln slave --languages FILE: a language added only by configuration is
// announced, and kiln run --lang runs it end to end through
// real processes (master, slave under its default sandbox, CLI), also as
// a test batch; a language the host lacks is reported, not announced.
func TestEndToEndConfiguredLanguage(t *testing.T) {
	testenv.Command(t, "bash")
	dir := t.TempDir()
	langs := writeFile(t, dir, "langs.json", `{"languages": [
  {"name": "bash", "extensions": [".sh"], "detect": {"tools": ["/bin/bash", "bash"], "version": ["--version"]},
   "source": {"name": "main.sh"}, "run": ["{tool}", "{src}"]},
  {"name": "nothere", "extensions": [".nh"], "detect": {"tools": ["kiln-no-such-tool"]},
   "source": {"name": "main.nh"}, "run": ["{tool}", "{src}"]}
]}`)
	c := startCluster(t, 1, "--languages", langs)
	c.slaves["slave-1"].waitOutput(t, `language not available on this host: not announced" lang=nothere`, 1)
	prog := writeFile(t, dir, "double.sh", "read n; echo $((n * 2))\n")
	in := writeFile(t, dir, "in.txt", "21\n")
	code, out, errs := kilnCmd(t, c.env, "run", "--lang", "bash", "--stdin", in, prog)
	if code != 0 || out != "42\n" {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, errs)
	}
	tests := filepath.Join(dir, "tests")
	os.Mkdir(tests, 0o700)
	writeFile(t, tests, "a.in", "1\n")
	writeFile(t, tests, "a.out", "2\n")
	writeFile(t, tests, "b.in", "4\n")
	writeFile(t, tests, "b.ans", "9\n")
	code, out, errs = kilnCmd(t, c.env, "run", "--lang", "bash", "--tests", tests, prog)
	if code != exitTestsFailed || !strings.Contains(errs, "passed 1/2") || !strings.Contains(out, "wrong_answer") {
		t.Fatalf("batch: exit %d stdout %q stderr %q", code, out, errs)
	}
	code, _, errs = kilnCmd(t, c.env, "run", "--lang", "nothere", writeFile(t, dir, "x.nh", "x"))
	if code != exitNoCapacity || !strings.Contains(errs, "no connected slave runs nothere") {
		t.Fatalf("missing language: exit %d stderr %q", code, errs)
	}
}
