package wire

import (
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// Judging: test batches (one compile, many runs, a verdict per case) and
// what the languages a slave announces allow.
//
// A test batch is a Submit with Tests > 0 whose stdin file holds a
// [TestBundle]; the slave compiles the program once and sends a
// [TestResult] per case as it is judged, then one Result whose Tests field
// sums the batch up. In a sealed job every byte field of the bundle is
// sealed on its own under a label naming its case ("stdin/3",
// "expected/3"), and so is each verdict ("verdict/3"), so that a master
// cannot swap, drop or replay cases (see docs/security.md).

// Optional features, announced in Hello.Features and echoed in
// Welcome.Features by a master that speaks them.
const (
	// FeatureTests: test batches (Submit.Tests, MsgTestResult). A client
	// sends a batch only to a master that echoed it; a master assigns a
	// batch only to a slave that announced it.
	FeatureTests = "tests"
	// FeatureInline: small files inside Submit and Assign ([Inline]). A
	// client sends them inline only to a master that echoed it; a master
	// sends them inline only to a slave that announced it, and refuses an
	// inline Submit from a session that did not.
	FeatureInline = "inline"
	// FeatureSubmitWraps: a sealed job's key wrapped in its Submit
	// (Submit.Wraps, Submit.WrapNonce, Assign.WrapNonce). A client sends
	// them only to a master that echoed it; a master uses them only for a
	// slave that announced it, and asks the client (WrapRequest) for any
	// other.
	FeatureSubmitWraps = "submit-wraps"
	// FeatureQuiet: a client session that does not want its jobs'
	// progress. A master that echoed it sends the session no JobState
	// queued, assigned or running, and none after a Result (whose Status
	// and Slave say what the final JobState did): only the requeued ones,
	// which void the output so far, and those Attach replays. A client
	// announces it only when it shows no progress (`kiln bench`).
	FeatureQuiet = "quiet"
)

// Test batch bounds.
const (
	// MaxTests is the most cases in one batch (the msgpack list bound).
	MaxTests = MaxItems
	// MaxOptions bounds the compiler options of a Submit or Assign and
	// the extensions of a toolchain.
	MaxOptions = 32
	// MaxTestExcerpt is the most bytes of a case's actual output (and of
	// a checker's message) a verdict carries.
	MaxTestExcerpt = 1024
)

// Compare modes of a [TestSpec].
const (
	CompareDefault = "default" // trailing whitespace of lines and trailing blank lines ignored; CRLF is LF
	CompareExact   = "exact"   // byte for byte
	CompareTokens  = "tokens"  // whitespace-separated tokens; numbers within RelTol or AbsTol
	CompareChecker = "checker" // a checker program decides (exit 42 accepted, 43 wrong answer)
)

// CompareModes lists every compare mode.
func CompareModes() []string {
	return []string{CompareDefault, CompareExact, CompareTokens, CompareChecker}
}

// Statuses of one case, in [TestVerdict.Status] and [TestSummary.Status].
const (
	TestAccepted     = "accepted"
	TestWrongAnswer  = "wrong_answer"
	TestTimeLimit    = "time_limit"
	TestMemoryLimit  = "memory_limit"
	TestOutputLimit  = "output_limit"
	TestRuntimeError = "runtime_error"
	// TestJudgeError: the checker crashed, looped or answered with an
	// exit code that means neither accepted nor wrong answer.
	TestJudgeError = "judge_error"
	// TestSkipped: not run, because an earlier case failed and the
	// batch stops on the first failure.
	TestSkipped = "skipped"
)

// Seal labels of a test batch.
const (
	LabelTestSpec = "tests/spec"
	LabelChecker  = "checker"
)

// TestLabel is the seal label of one field of case i, e.g. "stdin/3".
func TestLabel(field string, i int) string { return fmt.Sprintf("%s/%d", field, i) }

// TestBundle is the stdin file of a batch. In a sealed job, Spec is sealed
// under [LabelTestSpec], Checker under [LabelChecker] and the fields of
// case i under TestLabel("stdin", i) and TestLabel("expected", i).
type TestBundle struct {
	Spec    []byte     `msgpack:"spec"`              // an encoded [TestSpec]
	Checker []byte     `msgpack:"checker,omitempty"` // the checker's source
	Cases   []TestCase `msgpack:"cases"`
}

// TestCase is one case's input and expected output.
type TestCase struct {
	Stdin    []byte `msgpack:"stdin"`
	Expected []byte `msgpack:"expected"`
}

// TestSpec says how to judge a batch. Count must equal the number of cases
// in the bundle: a sealed spec is what tells the slave that none was
// dropped.
type TestSpec struct {
	Count   int     `msgpack:"count"`
	Compare string  `msgpack:"compare"`
	RelTol  float64 `msgpack:"rel_tol,omitempty"`
	AbsTol  float64 `msgpack:"abs_tol,omitempty"`
	// StopOnFirstFailure skips the cases after the first that fails.
	StopOnFirstFailure bool `msgpack:"stop,omitempty"`
	// CheckerFile and CheckerLanguage name the checker of CompareChecker.
	CheckerFile     string `msgpack:"checker_file,omitempty"`
	CheckerLanguage string `msgpack:"checker_lang,omitempty"`
	// Limits, when set, has Count entries: case i runs under Limits[i]
	// (zero fields take the job's limits).
	Limits []JobLimits `msgpack:"limits,omitempty"`
}

// Check reports a spec that cannot be judged.
func (s *TestSpec) Check() error {
	switch {
	case s.Count <= 0 || s.Count > MaxTests:
		return fmt.Errorf("test count %d is not within 1..%d", s.Count, MaxTests)
	case !slices.Contains(CompareModes(), s.Compare):
		return fmt.Errorf("unknown compare mode %q", s.Compare)
	case s.RelTol < 0 || s.AbsTol < 0 || s.RelTol != s.RelTol || s.AbsTol != s.AbsTol:
		return fmt.Errorf("tolerances must be non-negative numbers")
	case s.Compare == CompareChecker && (s.CheckerFile == "" || s.CheckerLanguage == ""):
		return fmt.Errorf("compare mode checker needs a checker")
	case len(s.Limits) != 0 && len(s.Limits) != s.Count:
		return fmt.Errorf("%d per-test limits for %d tests", len(s.Limits), s.Count)
	case len(s.CheckerFile) > MaxText || len(s.CheckerLanguage) > MaxShort:
		return fmt.Errorf("checker name over its limit")
	}
	return nil
}

// TestVerdict is the judgement of one case.
type TestVerdict struct {
	Index     int    `msgpack:"index"`
	Status    string `msgpack:"status"`
	ExitCode  int    `msgpack:"exit_code"`
	Signal    int    `msgpack:"signal,omitempty"`
	WallMs    int64  `msgpack:"wall_ms"`
	CPUMs     int64  `msgpack:"cpu_ms"`
	MemoryKiB int64  `msgpack:"memory_kib"`
	Detail    string `msgpack:"detail,omitempty"`
	// Output is the start of the program's output (at most
	// [MaxTestExcerpt] bytes), kept for a case that failed.
	Output []byte `msgpack:"output,omitempty"`
}

// TestResult carries one case's verdict. Data is the encoded
// [TestVerdict]; in a sealed job it is sealed under the attempt's output
// key with label TestLabel("verdict", Index), and Key is that output key
// wrapped for the client (as in Output), since a verdict may come before
// any output.
type TestResult struct {
	JobID   string `msgpack:"job"`
	Attempt int    `msgpack:"attempt"`
	Index   int    `msgpack:"index"`
	Data    []byte `msgpack:"data"`
	Key     []byte `msgpack:"key,omitempty"`
}

// TestSummary sums a batch up in its Result. Ran counts the cases judged
// (every TestResult of the attempt), Passed those accepted; Status is
// accepted when every case was, else the status of the first case that
// failed (judge_error wins over any other).
type TestSummary struct {
	Total          int    `msgpack:"total"`
	Ran            int    `msgpack:"ran"`
	Passed         int    `msgpack:"passed"`
	Status         string `msgpack:"status"`
	WorstWallMs    int64  `msgpack:"worst_wall_ms"`
	WorstCPUMs     int64  `msgpack:"worst_cpu_ms"`
	WorstMemoryKiB int64  `msgpack:"worst_memory_kib"`
}

// EncodeValue encodes one of this package's value types with msgpack.
func EncodeValue(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic("wire: encoding a value of plain fields: " + err.Error())
	}
	return b
}

// DecodeValue decodes bytes from a peer into v after [Validate], so that
// no declared length allocates more than the bytes hold.
func DecodeValue(b []byte, v any) error {
	if err := Validate(b); err != nil {
		return err
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

func (r *TestResult) checkFields(f *fields) {
	f.str("job", r.JobID, MaxShort)
	f.bin("data", r.Data, 4*MaxText)
	f.bin("key", r.Key, MaxKey)
}

func (s *TestSummary) checkFields(f *fields) { f.str("tests status", s.Status, MaxShort) }

func (t *Toolchain) checkJudgeFields(f *fields) {
	f.count("toolchain extensions", len(t.Extensions), MaxOptions)
	for _, e := range t.Extensions {
		f.str("extension", e, MaxShort)
	}
	f.count("toolchain options", len(t.Options), MaxItems)
	for _, o := range t.Options {
		f.str("option", o, MaxShort)
	}
	f.str("toolchain hash", t.Hash, MaxShort)
}

// HasFeature reports whether features holds name.
func HasFeature(features []string, name string) bool { return slices.Contains(features, name) }
