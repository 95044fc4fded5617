package client

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A tests folder pairs NAME.in with NAME.out or NAME.ans, in natural
// order; missing pairs, doubled answers and unreadable files are refused
// before anything is sent.
func TestLoadTests(t *testing.T) {
	dir := writeFiles(t, map[string]string{"1.in": "a", "1.out": "A", "10.in": "j", "10.ans": "J", "2.in": "b", "2.out": "B",
		"README.md": "ignored", "sample-01.in": "s", "sample-01.out": "S"})
	cases, err := LoadTests(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cases {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"1", "2", "10", "sample-01"}) || string(cases[2].Stdin) != "j" || string(cases[2].Expected) != "J" {
		t.Fatalf("cases %v %+v", names, cases)
	}
	bad := func(name, want string, files map[string]string, fix func(dir string)) {
		t.Run(name, func(t *testing.T) {
			dir := writeFiles(t, files)
			if fix != nil {
				fix(dir)
			}
			_, err := LoadTests(dir)
			if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), want) {
				t.Fatalf("err %v, want ErrBadInput with %q", err, want)
			}
		})
	}
	bad("input without answer", "3.in has no 3.out or 3.ans", map[string]string{"1.in": "", "1.out": "", "3.in": ""}, nil)
	bad("answer without input", "4.ans has no 4.in", map[string]string{"1.in": "", "1.out": "", "4.ans": ""}, nil)
	bad("both answers", "both", map[string]string{"1.in": "", "1.out": "", "1.ans": ""}, nil)
	bad("empty folder", "no NAME.in", map[string]string{"notes.txt": ""}, nil)
	bad("dangling link", "5.out", map[string]string{"5.in": ""}, func(dir string) {
		os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "5.out"))
	})
	bad("directory as input", "not a regular file", map[string]string{"6.out": ""}, func(dir string) {
		os.Mkdir(filepath.Join(dir, "6.in"), 0o700)
	})
	if _, err := LoadTests(filepath.Join(dir, "none")); !errors.Is(err, ErrBadInput) {
		t.Errorf("missing folder: %v", err)
	}
}

// A batch is never sent to a master that did not echo the feature: an
// old master would run it as a plain job.
func TestTestsNeedTheFeature(t *testing.T) {
	m := newFakeMaster(t)
	c, _ := m.dial(t, m.client)
	req := Request{FileName: "a.c", Source: []byte("int main(){}"), Tests: &Tests{Cases: []TestCase{{Stdin: []byte("1")}}}}
	if _, err := c.Submit(testCtx(t), req); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Submit to a master without the feature: %v", err)
	}
}

// An unsealed batch through the fake master: the bundle arrives as the
// stdin file, verdicts come back as events and in the Outcome.
func TestBatchRoundTrip(t *testing.T) {
	m := newFakeMaster(t)
	m.mu.Lock()
	m.features = []string{wire.FeatureTests}
	m.mu.Unlock()
	c, p := m.dial(t, m.client)
	m.mu.Lock()
	hello := m.hello
	m.mu.Unlock()
	if !slices.Contains(hello.Features, wire.FeatureTests) {
		t.Fatalf("client Hello features %v", hello.Features)
	}
	tests := &Tests{Cases: []TestCase{{Stdin: []byte("1"), Expected: []byte("2")}, {Stdin: []byte("2"), Expected: []byte("4"), Limits: wire.JobLimits{TimeMs: 700}}},
		Compare: wire.CompareTokens, AbsTol: 1e-6, StopOnFirstFailure: true}
	done := make(chan struct{})
	var job *Job
	var err error
	go func() {
		defer close(done)
		job, err = c.Submit(testCtx(t), Request{FileName: "a.cpp", Source: []byte("int main(){}"), Options: []string{"-std=c++20"}, Tests: tests})
	}()
	sub, files := p.accept("J1")
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if sub.Tests != 2 || !slices.Equal(sub.Options, []string{"-std=c++20"}) || len(files) != 2 || files[1].hdr.Kind != wire.FileStdin {
		t.Fatalf("submit %+v files %d", sub, len(files))
	}
	var b wire.TestBundle
	var spec wire.TestSpec
	if err := wire.DecodeValue(files[1].data, &b); err != nil {
		t.Fatal(err)
	}
	if err := wire.DecodeValue(b.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Count != 2 || spec.Compare != wire.CompareTokens || spec.AbsTol != 1e-6 || !spec.StopOnFirstFailure ||
		len(spec.Limits) != 2 || spec.Limits[1].TimeMs != 700 || string(b.Cases[1].Expected) != "4" {
		t.Fatalf("bundle %+v spec %+v", b, spec)
	}
	for i, st := range []string{wire.TestAccepted, wire.TestWrongAnswer} {
		v := wire.TestVerdict{Index: i, Status: st, WallMs: int64(10 * i)}
		p.send(wire.MsgTestResult, 0, wire.TestResult{JobID: "J1", Attempt: 1, Index: i, Data: wire.EncodeValue(&v)})
	}
	p.send(wire.MsgResult, 0, wire.Result{JobID: "J1", Attempt: 1, Status: wire.StatusOK,
		Tests: &wire.TestSummary{Total: 2, Ran: 2, Passed: 1, Status: wire.TestWrongAnswer}})
	var events int
	for ev := range job.Events() {
		if ev.Test != nil {
			events++
		}
	}
	out, err := job.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if events != 2 || len(out.Tests) != 2 || out.Tests[1].Status != wire.TestWrongAnswer || out.Result.Tests.Passed != 1 {
		t.Fatalf("events %d outcome %+v", events, out.Tests)
	}
}

// sealedVerdict seals v for index as a slave does.
func sealedVerdict(t *testing.T, key []byte, index int, v wire.TestVerdict) wire.TestResult {
	t.Helper()
	data, err := seal.Seal(key, wire.TestLabel("verdict", index), wire.EncodeValue(&v))
	if err != nil {
		t.Fatal(err)
	}
	return wire.TestResult{JobID: "J1", Attempt: 1, Index: index, Data: data}
}

// A master that swaps two sealed verdicts, delivers one twice or drops
// one ends the job with a SealError.
func TestSealedVerdictsRefused(t *testing.T) {
	m := newFakeMaster(t)
	c, _ := m.dial(t, m.client)
	newSealed := func() (*Job, []byte) {
		js := newTestJobSeal(t)
		js.startAttempt(1)
		js.outKey = seal.NewContentKey()
		j := newJob(c, "J1", 1<<20)
		j.seal = js
		return j, js.outKey
	}
	ok := func(i int) wire.TestVerdict { return wire.TestVerdict{Index: i, Status: wire.TestAccepted} }
	cases := map[string]func(j *Job, key []byte) bool{
		"swapped pair": func(j *Job, key []byte) bool {
			a, b := sealedVerdict(t, key, 0, ok(0)), sealedVerdict(t, key, 1, ok(1))
			a.Index, b.Index = 1, 0
			return j.testResult(a) || j.testResult(b)
		},
		"index relabelled inside": func(j *Job, key []byte) bool {
			return j.testResult(sealedVerdict(t, key, 1, ok(0)))
		},
		"repeated": func(j *Job, key []byte) bool {
			v := sealedVerdict(t, key, 0, ok(0))
			return j.testResult(v) || j.testResult(v)
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			j, key := newSealed()
			if !f(j, key) {
				t.Fatal("the job did not end")
			}
			_, err := j.Wait(testCtx(t))
			var se *SealError
			if !errors.As(err, &se) || !errors.Is(err, seal.ErrTampered) && !errors.Is(err, seal.ErrWrongKey) {
				t.Fatalf("err %v, want a SealError", err)
			}
		})
	}
	t.Run("dropped", func(t *testing.T) {
		j, key := newSealed()
		if j.testResult(sealedVerdict(t, key, 0, ok(0))) {
			t.Fatal("a good verdict ended the job")
		}
		j.mu.Lock()
		err := j.checkTestCount(wire.Result{Tests: &wire.TestSummary{Total: 2, Ran: 2}})
		j.mu.Unlock()
		if !errors.Is(err, seal.ErrTampered) {
			t.Fatalf("one verdict of two: %v", err)
		}
	})
}
