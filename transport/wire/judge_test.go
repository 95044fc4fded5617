package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// The golden bytes of a TestResult frame: a change of its encoding is a
// protocol change.
func TestTestResultBytes(t *testing.T) {
	e, err := Encode(MsgTestResult, 0, &TestResult{JobID: "J", Attempt: 1, Index: 3, Data: []byte{0xaa}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, e); err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "00000024 93 1a 00 c41f"+
		"84 a3 6a6f62 a1 4a a7 617474656d7074 01 a5 696e646578 03 a4 64617461 c401 aa")
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("frame\n got % x\nwant % x", buf.Bytes(), want)
	}
}

// Per-field bounds of the judging fields: pushed past, each is refused.
func TestJudgeFieldLimits(t *testing.T) {
	long := strings.Repeat("x", MaxShort+1)
	many := make([]string, MaxOptions+1)
	for _, tc := range []struct {
		t    MsgType
		body any
	}{
		{MsgSubmit, &Submit{Options: many}},
		{MsgSubmit, &Submit{Options: []string{long}}},
		{MsgAssign, &Assign{Options: many}},
		{MsgRegister, &Register{Toolchains: []Toolchain{{Extensions: many}}}},
		{MsgRegister, &Register{Toolchains: []Toolchain{{Hash: long}}}},
		{MsgWelcome, &Welcome{Features: make([]string, MaxFeatures+1)}},
		{MsgTestResult, &TestResult{Data: make([]byte, 4*MaxText+1)}},
		{MsgTestResult, &TestResult{Key: make([]byte, MaxKey+1)}},
		{MsgResult, &Result{Tests: &TestSummary{Status: long}}},
	} {
		e, err := Encode(tc.t, 0, tc.body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeNew(e); !errors.Is(err, ErrFieldLimit) {
			t.Errorf("%v %+v: err %v, want ErrFieldLimit", tc.t, tc.body, err)
		}
	}
}

func TestTestSpecCheck(t *testing.T) {
	ok := TestSpec{Count: 2, Compare: CompareDefault}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []TestSpec{
		{Count: 0, Compare: CompareDefault},
		{Count: MaxTests + 1, Compare: CompareDefault},
		{Count: 1, Compare: "fuzzy"},
		{Count: 1, Compare: CompareTokens, AbsTol: -1},
		{Count: 1, Compare: CompareChecker},
		{Count: 2, Compare: CompareDefault, Limits: []JobLimits{{}}},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// FuzzTestBundle decodes a bundle and its spec from untrusted bytes (what
// a slave reads from the master): no panic, allocations bounded by the
// input, and what decodes re-encodes to an equal value.
func FuzzTestBundle(f *testing.F) {
	spec := TestSpec{Count: 1, Compare: CompareTokens, RelTol: 1e-6, Limits: []JobLimits{{TimeMs: 5}}}
	f.Add(EncodeValue(&TestBundle{Spec: EncodeValue(&spec), Cases: []TestCase{{Stdin: []byte("1"), Expected: []byte("2")}}}))
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var b TestBundle
		var err error
		checkAllocs(t, len(data), func() { err = DecodeValue(data, &b) })
		if err != nil {
			return
		}
		var again TestBundle
		if err := DecodeValue(EncodeValue(&b), &again); err != nil || !reflect.DeepEqual(normalize(b), normalize(again)) {
			t.Fatalf("re-decoded %+v, want %+v (%v)", again, b, err)
		}
		var s TestSpec
		checkAllocs(t, len(b.Spec), func() { err = DecodeValue(b.Spec, &s) })
		if err == nil {
			_ = s.Check()
		}
	})
}

// normalize makes empty and nil byte slices compare equal.
func normalize(b TestBundle) TestBundle {
	fix := func(p []byte) []byte {
		if len(p) == 0 {
			return nil
		}
		return p
	}
	b.Spec, b.Checker = fix(b.Spec), fix(b.Checker)
	if len(b.Cases) == 0 {
		b.Cases = nil
	}
	for i := range b.Cases {
		b.Cases[i].Stdin, b.Cases[i].Expected = fix(b.Cases[i].Stdin), fix(b.Cases[i].Expected)
	}
	return b
}
