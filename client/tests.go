package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// ErrUnsupported is returned when the master does not speak a feature the
// request needs (test batches with a master from before them).
var ErrUnsupported = errors.New("not supported by the master")

// Tests are the cases of a test batch and how to judge them: the slave
// compiles the program once and runs it on every case (see
// docs/client.md).
type Tests struct {
	Cases []TestCase
	// Compare is a wire.Compare* mode; empty means wire.CompareDefault,
	// or wire.CompareChecker when Checker is set.
	Compare string
	// RelTol and AbsTol are the tolerances of wire.CompareTokens.
	RelTol, AbsTol float64
	// StopOnFirstFailure skips the cases after the first that fails.
	StopOnFirstFailure bool
	// Checker judges each case's output (wire.CompareChecker).
	Checker *Checker
}

// TestCase is one case: its input, its expected output and, optionally,
// its own limits (zero fields take the job's).
type TestCase struct {
	Name     string // shown to the user; not sent
	Stdin    []byte
	Expected []byte
	Limits   wire.JobLimits
}

// Checker is a checker program, in any language the cluster runs. It is
// run with three file names as arguments: the input, the expected output
// and the program's output; exit code 42 means accepted, 43 wrong answer,
// anything else (a crash, a time limit) is a judge error.
type Checker struct {
	FileName string
	Language string // empty: from FileName
	Source   []byte
}

// LoadTests reads a tests folder: every NAME.in with its NAME.out or
// NAME.ans (the conventions of Codeforces, DMOJ and Polygon packages),
// sorted by name with numbers in numeric order (2 before 10). An input
// without an answer, an answer without an input, a name with both .out
// and .ans, an unreadable file or an empty folder is refused with an error
// wrapping [ErrBadInput], before anything is sent.
func LoadTests(dir string) ([]TestCase, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: tests folder: %w", ErrBadInput, err)
	}
	ins, outs := map[string]string{}, map[string]string{}
	for _, e := range ents {
		name := e.Name()
		ext := filepath.Ext(name)
		base := strings.TrimSuffix(name, ext)
		switch ext {
		case ".in":
			ins[base] = name
		case ".out", ".ans":
			if prev, dup := outs[base]; dup {
				return nil, fmt.Errorf("%w: tests folder %s: both %s and %s", ErrBadInput, dir, prev, name)
			}
			outs[base] = name
		default:
			continue
		}
		if e.Type()&fs.ModeType != 0 && e.Type()&fs.ModeSymlink == 0 {
			return nil, fmt.Errorf("%w: %s: not a regular file", ErrBadInput, filepath.Join(dir, name))
		}
	}
	var problems []string
	for b, n := range ins {
		if outs[b] == "" {
			problems = append(problems, n+" has no "+b+".out or "+b+".ans")
		}
	}
	for b, n := range outs {
		if ins[b] == "" {
			problems = append(problems, n+" has no "+b+".in")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("%w: tests folder %s: %s", ErrBadInput, dir, strings.Join(problems, "; "))
	}
	if len(ins) == 0 {
		return nil, fmt.Errorf("%w: tests folder %s: no NAME.in / NAME.out pairs", ErrBadInput, dir)
	}
	if len(ins) > wire.MaxTests {
		return nil, fmt.Errorf("%w: tests folder %s: %d tests, at most %d", ErrBadInput, dir, len(ins), wire.MaxTests)
	}
	names := make([]string, 0, len(ins))
	for b := range ins {
		names = append(names, b)
	}
	slices.SortFunc(names, naturalCompare)
	cases := make([]TestCase, 0, len(names))
	for _, b := range names {
		in, err := os.ReadFile(filepath.Join(dir, ins[b]))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
		}
		want, err := os.ReadFile(filepath.Join(dir, outs[b]))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
		}
		cases = append(cases, TestCase{Name: b, Stdin: in, Expected: want})
	}
	return cases, nil
}

// naturalCompare orders names with their digit runs compared as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := len(na) - len(nb); c != 0 {
				return c
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// compare returns the compare mode of t.
func (t *Tests) compare() string {
	switch {
	case t.Compare != "":
		return t.Compare
	case t.Checker != nil:
		return wire.CompareChecker
	}
	return wire.CompareDefault
}

// checkTests refuses a batch the master cannot take or that is malformed.
func (c *Client) checkTests(req Request) error {
	t := req.Tests
	if t == nil {
		return nil
	}
	mode := t.compare()
	switch {
	case !wire.HasFeature(c.welcome.Features, wire.FeatureTests):
		return fmt.Errorf("%w: test batches (the master is older than them)", ErrUnsupported)
	case len(req.Stdin) > 0:
		return fmt.Errorf("%w: a test batch takes its input from its cases, not Stdin", ErrBadInput)
	case len(t.Cases) == 0 || len(t.Cases) > wire.MaxTests:
		return fmt.Errorf("%w: %d tests; a batch holds 1 to %d", ErrBadInput, len(t.Cases), wire.MaxTests)
	case !slices.Contains(wire.CompareModes(), mode):
		return fmt.Errorf("%w: compare mode %q (want %s)", ErrBadInput, mode, strings.Join(wire.CompareModes(), ", "))
	case (mode == wire.CompareChecker) != (t.Checker != nil):
		return fmt.Errorf("%w: compare mode checker goes with a checker, and a checker with it", ErrBadInput)
	case t.RelTol < 0 || t.AbsTol < 0:
		return fmt.Errorf("%w: negative tolerance", ErrBadInput)
	}
	if ch := t.Checker; ch != nil && (len(ch.Source) == 0 || ch.Language == "") {
		return fmt.Errorf("%w: checker %s: empty, or its language unknown", ErrBadInput, ch.FileName)
	}
	return nil
}

// packTests encodes the batch's bundle, the stdin file of the job, with
// every field sealed under its own label when js is set.
func (c *Client) packTests(t *Tests, js *jobSeal) ([]byte, error) {
	spec := wire.TestSpec{Count: len(t.Cases), Compare: t.compare(), RelTol: t.RelTol, AbsTol: t.AbsTol,
		StopOnFirstFailure: t.StopOnFirstFailure}
	var b wire.TestBundle
	if ch := t.Checker; ch != nil {
		spec.CheckerFile, spec.CheckerLanguage, b.Checker = filepath.Base(ch.FileName), ch.Language, ch.Source
	}
	for _, tc := range t.Cases {
		if tc.Limits != (wire.JobLimits{}) {
			spec.Limits = make([]wire.JobLimits, len(t.Cases))
			for i, tc := range t.Cases {
				spec.Limits[i] = tc.Limits
			}
			break
		}
	}
	b.Spec = wire.EncodeValue(&spec)
	b.Cases = make([]wire.TestCase, len(t.Cases))
	for i, tc := range t.Cases {
		b.Cases[i] = wire.TestCase{Stdin: tc.Stdin, Expected: tc.Expected}
	}
	if js != nil {
		if err := js.sealBundle(&b); err != nil {
			return nil, err
		}
	}
	data := wire.EncodeValue(&b)
	if l := c.welcome.Limits.MaxStdin; l > 0 && int64(len(data)) > l {
		return nil, fmt.Errorf("%w: the tests are %d bytes, over the master's limit of %d", ErrBadInput, len(data), l)
	}
	return data, nil
}

// sealBundle seals every field of b under its label.
func (s *jobSeal) sealBundle(b *wire.TestBundle) error {
	var err error
	if b.Spec, err = seal.Seal(s.contentKey, wire.LabelTestSpec, b.Spec); err != nil {
		return err
	}
	if b.Checker != nil {
		if b.Checker, err = seal.Seal(s.contentKey, wire.LabelChecker, b.Checker); err != nil {
			return err
		}
	}
	for i := range b.Cases {
		c := &b.Cases[i]
		if c.Stdin, err = seal.Seal(s.contentKey, wire.TestLabel("stdin", i), c.Stdin); err != nil {
			return err
		}
		if c.Expected, err = seal.Seal(s.contentKey, wire.TestLabel("expected", i), c.Expected); err != nil {
			return err
		}
	}
	return nil
}

// openVerdict authenticates one case's verdict of the current attempt: it
// must open under the output key with the label of the index it claims,
// and say that index inside.
func (s *jobSeal) openVerdict(jobID string, tr wire.TestResult) ([]byte, error) {
	s.startAttempt(tr.Attempt)
	if len(tr.Key) > 0 {
		if err := s.takeKey(jobID, tr.Key); err != nil {
			return nil, err
		}
	}
	if s.outKey == nil {
		return nil, fmt.Errorf("%w: a verdict before the output key", seal.ErrTampered)
	}
	return seal.Open(s.outKey, wire.TestLabel("verdict", tr.Index), tr.Data)
}

// resolveLanguage fills req.Language (and its checker's) from the file
// extension: a built-in language, else one the master's slaves announced.
func (c *Client) resolveLanguage(ctx context.Context, req Request) (Request, error) {
	need := req.Language == "" && wire.LanguageOf(req.FileName) == ""
	var ch Checker
	if req.Tests != nil && req.Tests.Checker != nil {
		ch = *req.Tests.Checker
		need = need || ch.Language == "" && wire.LanguageOf(ch.FileName) == ""
	}
	var info wire.Info
	if need {
		var err error
		if info, err = c.Info(ctx); err != nil {
			return req, err
		}
	}
	req.Language = languageOf(req.FileName, req.Language, info)
	if req.Tests != nil && req.Tests.Checker != nil {
		t := *req.Tests
		ch.Language = languageOf(ch.FileName, ch.Language, info)
		t.Checker = &ch
		req.Tests = &t
	}
	return req, nil
}

// languageOf is lang, or the language of name's extension.
func languageOf(name, lang string, info wire.Info) string {
	if lang != "" {
		return lang
	}
	if l := wire.LanguageOf(name); l != "" {
		return l
	}
	ext := strings.ToLower(filepath.Ext(name))
	for _, li := range info.Languages {
		for _, e := range li.Extensions {
			if strings.ToLower(e) == ext && ext != "" {
				return li.Language
			}
		}
	}
	return ""
}
