package slave

import (
	"errors"
	"testing"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// FuzzOpenBatch opens bundles from untrusted bytes, sealed and not: an
// error or a batch whose case count is the one announced, never a panic.
func FuzzOpenBatch(f *testing.F) {
	key := make([]byte, 32)
	spec := wire.TestSpec{Count: 1, Compare: wire.CompareDefault}
	f.Add(wire.EncodeValue(&wire.TestBundle{Spec: wire.EncodeValue(&spec), Cases: []wire.TestCase{{Stdin: []byte("1")}}}), uint8(1), false)
	sealed, _ := seal.Seal(key, wire.LabelTestSpec, wire.EncodeValue(&spec))
	f.Add(wire.EncodeValue(&wire.TestBundle{Spec: sealed, Cases: []wire.TestCase{{}}}), uint8(1), true)
	f.Fuzz(func(t *testing.T, data []byte, n uint8, sealedJob bool) {
		k := []byte(nil)
		if sealedJob {
			k = key
		}
		b, err := openBatch(data, k, int(n))
		if err == nil && (len(b.Cases) != int(n) || b.Spec.Count != int(n) || b.Spec.Check() != nil) {
			t.Fatalf("opened %d cases (spec %+v) for %d announced", len(b.Cases), b.Spec, n)
		}
	})
}

// FuzzParseLanguages: an operator's languages file never panics the
// parser, and what parses passes its own checks again.
func FuzzParseLanguages(f *testing.F) {
	f.Add(builtinLanguages)
	f.Add([]byte(bashSpec))
	f.Add([]byte(`{"languages": [{"name": "x"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := ParseLanguages("f.json", data)
		if err != nil {
			if !errors.Is(err, ErrLanguagesFile) {
				t.Fatalf("error %v does not wrap ErrLanguagesFile", err)
			}
			return
		}
		for _, s := range specs {
			if err := s.check(); err != nil {
				t.Fatalf("parsed %q fails its check: %v", s.Name, err)
			}
			newLanguage(s).run("/bin/x", "a", 1<<20)
		}
	})
}
