// Command testsum reads `go test -json` on stdin and prints what a person
// needs from it: one line per package as `go test` prints them, the output
// of every failed test, the tests skipped for want of root, a kernel
// feature or a program (internal/testenv's MISSING: skips) one per line,
// other skips counted by reason, and a last line counting the tests that
// passed, were skipped and failed. It exits 1 when anything failed.
//
//	go test -json ./... | go run ./.ci/testsum
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string
}

const missingPrefix = "MISSING:" // testenv.SkipPrefix

type key struct{ pkg, test string }

type summary struct {
	out                    io.Writer
	buf                    map[key][]string // output of tests still running
	failedIn               map[string]int   // failed tests per package
	passed, failed         int
	missing                []string // "pkg Test: reason"
	skips                  map[string]int
	skipped, brokenPackage int
}

func main() {
	s := &summary{out: os.Stdout, buf: map[key][]string{}, failedIn: map[string]int{}, skips: map[string]int{}}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(s.out, sc.Text()) // not an event: pass it on
			continue
		}
		s.add(e)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "testsum:", err)
		os.Exit(2)
	}
	if !s.report() {
		os.Exit(1)
	}
}

func (s *summary) add(e event) {
	k := key{e.Package, e.Test}
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
	case "build-fail":
		s.brokenPackage++
	case "output":
		s.buf[k] = append(s.buf[k], e.Output)
	case "pass", "fail", "skip":
		if e.Test == "" {
			s.endPackage(e)
		} else {
			s.endTest(k, e.Action)
		}
		delete(s.buf, k)
	}
}

func (s *summary) endTest(k key, action string) {
	switch action {
	case "pass":
		s.passed++
	case "fail":
		s.failed++
		s.failedIn[k.pkg]++
		fmt.Fprint(s.out, strings.Join(s.buf[k], ""))
	case "skip":
		s.skipped++
		reason := skipReason(s.buf[k])
		if strings.HasPrefix(reason, missingPrefix) {
			why := strings.TrimSpace(strings.TrimPrefix(reason, missingPrefix))
			why = strings.TrimSuffix(strings.TrimPrefix(why, "this test needs "), " (with CI=true this is a failure)")
			s.missing = append(s.missing, fmt.Sprintf("%s %s: needs %s", k.pkg, k.test, why))
			return
		}
		if reason == "" {
			reason = "(no reason given)"
		}
		s.skips[k.pkg+": "+reason]++
	}
}

// skipReason is the last line a skipped test logged, without its
// file:line prefix.
func skipReason(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l == "" || strings.HasPrefix(l, "---") || strings.HasPrefix(l, "=== ") {
			continue
		}
		if _, rest, ok := strings.Cut(l, ": "); ok && strings.Contains(l[:len(l)-len(rest)], ".go:") {
			return rest
		}
		return l
	}
	return ""
}

func (s *summary) endPackage(e event) {
	k := key{e.Package, ""}
	switch e.Action {
	case "pass":
		fmt.Fprintf(s.out, "ok  \t%s\t%.3fs\n", e.Package, e.Elapsed)
	case "skip":
		fmt.Fprintf(s.out, "?   \t%s\t[no test files]\n", e.Package)
	case "fail":
		if s.failedIn[e.Package] == 0 { // a panic, a timeout, a leak found by TestMain
			s.failed++
			s.brokenPackage++
			fmt.Fprint(s.out, strings.Join(s.buf[k], ""))
			for t, lines := range s.buf {
				if t.pkg == e.Package && t.test != "" {
					fmt.Fprintf(s.out, "(still running: %s)\n%s", t.test, strings.Join(lines, ""))
				}
			}
		}
		fmt.Fprintf(s.out, "FAIL\t%s\t%.3fs\n", e.Package, e.Elapsed)
	}
}

// report prints the skips and the counts, and says whether all passed.
func (s *summary) report() bool {
	if len(s.missing) > 0 {
		sort.Strings(s.missing)
		fmt.Fprintf(s.out, "\n%d test(s) skipped for want of root, a kernel feature or a program (CI=true makes these failures):\n", len(s.missing))
		for _, m := range s.missing {
			fmt.Fprintln(s.out, "  "+m)
		}
	}
	if len(s.skips) > 0 {
		var reasons []string
		for r := range s.skips {
			reasons = append(reasons, r)
		}
		sort.Strings(reasons)
		fmt.Fprintln(s.out, "\nother skips (by choice: -short, fuzz seeds out of range...):")
		for _, r := range reasons {
			fmt.Fprintf(s.out, "  %4d × %s\n", s.skips[r], r)
		}
	}
	fmt.Fprintf(s.out, "\ntests: %d passed, %d skipped (%d for want of root, a kernel feature or a program), %d failed\n",
		s.passed, s.skipped, len(s.missing), s.failed)
	return s.failed == 0 && s.brokenPackage == 0
}
