// Command mutate checks that the tests catch the security mutations listed
// in .ci/mutations.txt: it applies each one alone to a copy of the tree in
// a temporary directory (never to the working tree), runs the tests the
// entry names, and prints a table of the tests that failed, that is caught
// the mutation. It exits 1 when a mutation survives, when an entry no
// longer applies (its original text is not found exactly once), when a
// mutant does not build, or when the tests fail before any mutation.
//
//	go run ./.ci/mutate [-list .ci/mutations.txt] [-only NAME] [-v]
//
// `make mutate` runs it. It is slow (every entry runs its tests once, and
// each distinct test selection once more unmutated) and not part of
// `make test`.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// mutation is one entry of the list: one or more edits applied together
// (a check made twice, say at admission and again when queueing, is only
// broken when both are).
type mutation struct {
	Name, Why string
	Edits     []edit
	Packages  []string
	Run       string // -run pattern; empty runs every test of the packages
	line      int
}

// edit replaces Original, which must occur exactly once in File, by Into.
type edit struct {
	File, Original, Into string
}

// files names the files the mutation edits.
func (m mutation) files() string {
	var fs []string
	for _, e := range m.Edits {
		if !slices.Contains(fs, e.File) {
			fs = append(fs, e.File)
		}
	}
	return strings.Join(fs, ", ")
}

func (m mutation) selection() string { return m.Run + " " + strings.Join(m.Packages, " ") }

// verdict is what happened to one mutation.
type verdict struct {
	caught  []string // tests that failed
	problem string   // why the entry could not be judged
	elapsed time.Duration
}

func main() {
	list := flag.String("list", ".ci/mutations.txt", "the list of mutations")
	only := flag.String("only", "", "run only the mutations whose name contains this")
	verbose := flag.Bool("v", false, "print the test output of survivors")
	flag.Parse()
	muts, err := parseFile(*list)
	if err != nil {
		fatal(err)
	}
	if *only != "" {
		muts = filter(muts, *only)
	}
	tree, err := copyTree()
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(filepath.Dir(tree))
	if err := baseline(tree, muts); err != nil {
		fatal(err)
	}
	verdicts := make([]verdict, len(muts))
	for i, m := range muts {
		fmt.Fprintf(os.Stderr, "mutate: [%d/%d] %s\n", i+1, len(muts), m.Name)
		verdicts[i] = try(tree, m, *verbose)
	}
	if !report(os.Stdout, muts, verdicts) {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mutate:", err)
	os.Exit(2)
}

func filter(muts []mutation, sub string) []mutation {
	var out []mutation
	for _, m := range muts {
		if strings.Contains(m.Name, sub) {
			out = append(out, m)
		}
	}
	return out
}

// parseFile reads the list. An entry is
//
//	[name] why this check matters
//	test ./pkg/ ./other/
//	run  ^TestA$|^TestB$        (optional)
//	file path/to/file.go
//	original:
//	<the exact lines to replace>
//	mutated:
//	<the lines that replace them>
//	end
//
// with one or more file/original/mutated/end edits. Lines starting with #
// between entries are comments.
func parseFile(path string) ([]mutation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parse(f, path)
}

func parse(r io.Reader, path string) ([]mutation, error) {
	var (
		muts  []mutation
		cur   *mutation
		file  string
		block *[]string
		orig  []string
		into  []string
	)
	done := func() error {
		if cur == nil {
			return nil
		}
		if len(cur.Edits) == 0 || len(cur.Packages) == 0 {
			return fmt.Errorf("%s:%d: entry %s needs test packages and at least one edit", path, cur.line, cur.Name)
		}
		muts = append(muts, *cur)
		cur = nil
		return nil
	}
	sc := bufio.NewScanner(r)
	n := 0
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...))
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		if block != nil && line != "mutated:" && line != "end" {
			*block = append(*block, line)
			continue
		}
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			if err := done(); err != nil {
				return nil, err
			}
			name, why, ok := strings.Cut(line[1:], "]")
			if !ok || name == "" {
				return nil, bad("want [name] why")
			}
			cur = &mutation{Name: name, Why: strings.TrimSpace(why), line: n}
		case cur == nil:
			return nil, bad("want an entry starting with [name]")
		case strings.HasPrefix(line, "file "):
			file = strings.TrimSpace(line[5:])
		case strings.HasPrefix(line, "test "):
			cur.Packages = strings.Fields(line[5:])
		case strings.HasPrefix(line, "run "):
			cur.Run = strings.TrimSpace(line[4:])
		case line == "original:":
			block, orig = &orig, nil
		case line == "mutated:" && block == &orig:
			block, into = &into, nil
		case line == "end" && block == &into:
			e := edit{File: file, Original: strings.Join(orig, "\n"), Into: strings.Join(into, "\n")}
			if e.File == "" || e.Original == "" || e.Original == e.Into {
				return nil, bad("entry %s: an edit needs a file, an original and a different mutation", cur.Name)
			}
			cur.Edits = append(cur.Edits, e)
			block, file = nil, ""
		default:
			return nil, bad("unexpected line %q in entry %s", line, cur.Name)
		}
	}
	if block != nil {
		return nil, fmt.Errorf("%s: entry %s has an edit without end", path, cur.Name)
	}
	if err := done(); err != nil {
		return nil, err
	}
	return muts, sc.Err()
}

// copyTree copies the files git knows of (tracked, and untracked but not
// ignored) into a new temporary directory and returns the copy's root.
func copyTree() (string, error) {
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("not in a git checkout: %w", err)
	}
	root := strings.TrimSpace(string(top))
	names, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp("", "kiln-mutate-")
	if err != nil {
		return "", err
	}
	dst := filepath.Join(tmp, "kiln")
	for _, name := range strings.Split(strings.TrimRight(string(names), "\x00"), "\x00") {
		if err := copyFile(filepath.Join(root, name), filepath.Join(dst, name)); err != nil {
			os.RemoveAll(tmp)
			return "", err
		}
	}
	return dst, nil
}

func copyFile(src, dst string) error {
	fi, err := os.Lstat(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil // deleted in the working tree
	}
	if err != nil || !fi.Mode().IsRegular() {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, data, fi.Mode().Perm())
}

// baseline runs every distinct test selection once without mutation: a
// test failing already would "catch" every mutation.
func baseline(tree string, muts []mutation) error {
	done := map[string]bool{}
	for _, m := range muts {
		if done[m.selection()] {
			continue
		}
		done[m.selection()] = true
		fmt.Fprintf(os.Stderr, "mutate: baseline %s\n", m.selection())
		failed, out, err := goTest(tree, m)
		if err != nil {
			return fmt.Errorf("baseline %s: %w\n%s", m.selection(), err, out)
		}
		if len(failed) > 0 {
			return fmt.Errorf("baseline %s: tests fail without any mutation: %s\n%s", m.selection(), strings.Join(failed, ", "), out)
		}
	}
	return nil
}

// try applies m to tree, runs its tests and restores the files.
func try(tree string, m mutation, verbose bool) verdict {
	saved := map[string][]byte{}
	defer func() {
		for path, b := range saved {
			os.WriteFile(path, b, 0o644)
		}
	}()
	for _, e := range m.Edits {
		path := filepath.Join(tree, e.File)
		cur, err := os.ReadFile(path)
		if err != nil {
			return verdict{problem: err.Error()}
		}
		if n := bytes.Count(cur, []byte(e.Original)); n != 1 {
			return verdict{problem: fmt.Sprintf("original text found %d times in %s (the list needs updating)", n, e.File)}
		}
		if _, ok := saved[path]; !ok {
			saved[path] = cur
		}
		if err := os.WriteFile(path, bytes.Replace(cur, []byte(e.Original), []byte(e.Into), 1), 0o644); err != nil {
			return verdict{problem: err.Error()}
		}
	}
	start := time.Now()
	failed, out, err := goTest(tree, m)
	v := verdict{caught: failed, elapsed: time.Since(start)}
	if err != nil {
		v.problem = err.Error()
	}
	if verbose && len(failed) == 0 {
		fmt.Fprintf(os.Stderr, "%s", out)
	}
	return v
}

// goTest runs m's tests in tree and returns the failed tests (package-level
// failures such as a panic or a leak as "pkg (package)"), the output of
// the failures, and an error when a package did not build.
func goTest(tree string, m mutation) ([]string, string, error) {
	args := []string{"test", "-count=1", "-json", "-timeout", "5m"}
	if m.Run != "" {
		args = append(args, "-run", m.Run)
	}
	cmd := exec.Command("go", append(args, m.Packages...)...)
	cmd.Dir = tree
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.Output() // a failing test exits 1; the events say which
	return failures(stdout, stderr.String())
}

type event struct {
	Action, Package, Test, Output, ImportPath string
}

func failures(stdout []byte, stderr string) ([]string, string, error) {
	var (
		failed   []string
		out      strings.Builder
		testFail = map[string]bool{}
		broken   []string
	)
	out.WriteString(stderr)
	for _, line := range bytes.Split(stdout, []byte("\n")) {
		var e event
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		switch {
		case e.Action == "build-fail":
			broken = append(broken, e.ImportPath)
		case e.Action == "build-output" || e.Action == "output":
			out.WriteString(e.Output)
		case e.Action == "fail" && e.Test != "":
			if !strings.Contains(e.Test, "/") {
				failed = append(failed, short(e.Package)+"."+e.Test)
			}
			testFail[e.Package] = true
		case e.Action == "fail" && !testFail[e.Package]:
			failed = append(failed, short(e.Package)+" (package)")
		}
	}
	if len(broken) > 0 {
		return failed, out.String(), fmt.Errorf("does not build: %s", strings.Join(broken, " "))
	}
	if len(failed) == 0 && strings.TrimSpace(stderr) != "" && len(stdout) == 0 {
		return nil, out.String(), errors.New(strings.TrimSpace(stderr))
	}
	return failed, out.String(), nil
}

func short(pkg string) string { return strings.TrimPrefix(pkg, "kiln/") }

// report prints the table and says whether every mutation was caught.
func report(w io.Writer, muts []mutation, vs []verdict) bool {
	ok := true
	fmt.Fprintf(w, "| # | mutation | file | caught by | time |\n|---|---|---|---|---|\n")
	for i, m := range muts {
		v := vs[i]
		by := strings.Join(firstN(v.caught, 3), ", ")
		switch {
		case v.problem != "":
			by, ok = "**ERROR**: "+v.problem, false
		case len(v.caught) == 0:
			by, ok = "**SURVIVED**", false
		}
		fmt.Fprintf(w, "| %d | %s: %s | %s | %s | %.0fs |\n", i+1, m.Name, m.Why, m.files(), by, v.elapsed.Seconds())
	}
	caught := 0
	for _, v := range vs {
		if v.problem == "" && len(v.caught) > 0 {
			caught++
		}
	}
	fmt.Fprintf(w, "\n%d of %d mutations caught\n", caught, len(muts))
	return ok
}

func firstN(s []string, n int) []string {
	sort.Strings(s)
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("+%d more", len(s)-n))
}
