package seal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// The fuzz targets cover every decoder of network bytes. Their seeds live in
// testdata/fuzz/<Target>/ and are rewritten by
//
//	KILN_SEAL_WRITE_SEEDS=1 go test -run TestWriteFuzzSeeds ./transport/seal/

const fuzzLabel = LabelSource

// fuzzPriv is the recipient private key of FuzzUnwrap.
var fuzzPriv = bytes.Repeat([]byte{0x07}, KeySize)

func FuzzOpen(f *testing.F) {
	key := testKey(0)
	f.Fuzz(func(t *testing.T, c []byte) {
		p, err := Open(key, fuzzLabel, c)
		if err != nil {
			if p != nil {
				t.Fatalf("Open returned %d bytes with error %v", len(p), err)
			}
			requireSentinel(t, err, nil)
			return
		}
		// Only the key holder can make a stream that opens, and the
		// encoding is canonical: resealing with its salt gives it back.
		if again := sealStream(key, fuzzLabel, c[4:4+SaltSize], p); !bytes.Equal(again, c) {
			t.Fatal("a stream opened but does not reseal to the same bytes")
		}
	})
}

func FuzzReader(f *testing.F) {
	key := testKey(0)
	f.Fuzz(func(t *testing.T, c []byte) {
		r := mustReader(t, key, fuzzLabel, iotest.HalfReader(bytes.NewReader(c)))
		got, err := io.ReadAll(r)
		want, openErr := Open(key, fuzzLabel, c)
		if (err == nil) != (openErr == nil) {
			t.Fatalf("Reader error %v, Open error %v", err, openErr)
		}
		if err != nil {
			requireSentinel(t, err, nil)
			// Only whole chunks that authenticated as not last come out.
			if len(got)%ChunkSize != 0 {
				t.Fatalf("Reader released %d bytes before failing", len(got))
			}
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatal("Reader and Open disagree")
		}
	})
}

func FuzzUnwrap(f *testing.F) {
	f.Fuzz(func(t *testing.T, wrapped, context []byte) {
		key, err := Unwrap(wrapped, fuzzPriv, context)
		if err != nil {
			if key != nil {
				t.Fatal("Unwrap returned a key with an error")
			}
			requireSentinel(t, err, nil)
			return
		}
		if len(key) != KeySize {
			t.Fatalf("Unwrap returned a %d-byte key", len(key))
		}
	})
}

func FuzzOpenNext(f *testing.F) {
	key := testKey(0)
	f.Fuzz(func(t *testing.T, m0, m1, m2 []byte) {
		o := mustOpener(t, key, LabelStdout)
		var firstErr error
		ended := false
		for _, m := range [][]byte{m0, m1, m2} {
			p, last, err := o.OpenNext(m)
			switch {
			case firstErr != nil:
				if err != firstErr {
					t.Fatalf("error not sticky: %v then %v", firstErr, err)
				}
			case err != nil:
				if p != nil || last {
					t.Fatal("OpenNext returned data with an error")
				}
				requireSentinel(t, err, nil)
				firstErr = err
			default:
				ended = last
			}
		}
		if err := o.Finish(); firstErr != nil && err != firstErr || firstErr == nil && ended != (err == nil) {
			t.Fatalf("Finish = %v after error %v, ended %v", err, firstErr, ended)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	key := testKey(0)
	f.Fuzz(func(t *testing.T, p []byte, label string, piece uint) {
		if len(label) == 0 || len(label) > MaxLabel {
			t.Skip()
		}
		c, err := Seal(key, label, p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Open(key, label, c)
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("Open(Seal(p)) = %v, equal %v", err, bytes.Equal(got, p))
		}
		size := int(piece%(2*ChunkSize)) + 1
		c = writeInPieces(t, key, label, p, size)
		got, err = io.ReadAll(mustReader(t, key, label, bytes.NewReader(c)))
		if err != nil || !bytes.Equal(got, p) {
			t.Fatalf("Reader(Writer(p)) = %v, equal %v", err, bytes.Equal(got, p))
		}
		var msgs [][]byte
		for rest := p; ; {
			k := min(size, len(rest))
			msgs, rest = append(msgs, rest[:k]), rest[k:]
			if len(rest) == 0 {
				break
			}
		}
		sealed := sealMessages(t, key, label, msgs)
		o := mustOpener(t, key, label)
		got = got[:0]
		for _, m := range sealed {
			q, _, err := o.OpenNext(m)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, q...)
		}
		if err := o.Finish(); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("sequence: %v, equal %v", err, bytes.Equal(got, p))
		}
	})
}

// TestWriteFuzzSeeds writes the seed corpora when KILN_SEAL_WRITE_SEEDS=1.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KILN_SEAL_WRITE_SEEDS") != "1" {
		t.Skip("set KILN_SEAL_WRITE_SEEDS=1 to rewrite testdata/fuzz")
	}
	key := testKey(0)
	streams := map[string][]byte{}
	for i, n := range []int{0, 1, 9, 100, 1000} {
		c := sealStream(key, fuzzLabel, testSalt(byte(i)), testData(n))
		streams[fmt.Sprintf("valid_%d", n)] = c
		streams[fmt.Sprintf("cut_%d", n)] = c[:len(c)-1]
	}
	streams["header_only"] = streams["valid_0"][:HeaderSize]
	streams["other_label"] = sealStream(key, LabelStdin, testSalt(9), []byte("x"))
	writeSeeds(t, "FuzzOpen", streams)
	writeSeeds(t, "FuzzReader", streams)

	pub, _ := PublicKey(fuzzPriv)
	ctx := Context("17", "input")
	w, err := wrap(key, pub, ctx, testEphemeral(t))
	if err != nil {
		t.Fatal(err)
	}
	writeSeeds(t, "FuzzUnwrap", map[string][]byte{"valid": w, "valid_ctx": ctx, "other_ctx": Context("18", "input")},
		"valid", "valid_ctx", "valid", "other_ctx")

	s := newSequence(key, LabelStdout, testSalt(3))
	m0, m1, m2 := s.SealNext([]byte("out 1\n"), false), s.SealNext(nil, false), s.SealNext([]byte("bye\n"), true)
	writeSeeds(t, "FuzzOpenNext", map[string][]byte{"m0": m0, "m1": m1, "m2": m2, "empty": nil},
		"m0", "m1", "m2", "m0", "m2", "m1", "m0", "m1", "empty")

	dir := filepath.Join("testdata", "fuzz", "FuzzRoundTrip")
	os.MkdirAll(dir, 0o755)
	for name, body := range map[string]string{
		"empty":   "[]byte(\"\")\nstring(\"source\")\nuint(0)\n",
		"small":   "[]byte(\"print('hello')\\n\")\nstring(\"stdout\")\nuint(3)\n",
		"binary":  "[]byte(\"\\x00\\xff\\x10\\x80\")\nstring(\"compile\")\nuint(65535)\n",
		"oneword": "[]byte(\"a\")\nstring(\"x\")\nuint(1)\n",
	} {
		os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+body), 0o644)
	}
}

// writeSeeds writes seed files for target. For a one-argument target each
// entry of files is a seed; otherwise layout names the entries to combine,
// arity names per seed.
func writeSeeds(t *testing.T, target string, files map[string][]byte, layout ...string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(layout) == 0 {
		for name, b := range files {
			if err := writeSeed(dir, name, [][]byte{b}); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	arity := map[string]int{"FuzzUnwrap": 2, "FuzzOpenNext": 3}[target]
	for i := 0; i+arity <= len(layout); i += arity {
		var args [][]byte
		for _, n := range layout[i : i+arity] {
			args = append(args, files[n])
		}
		if err := writeSeed(dir, fmt.Sprintf("seed_%d", i/arity), args); err != nil {
			t.Fatal(err)
		}
	}
}

func writeSeed(dir, name string, args [][]byte) error {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		fmt.Fprintf(&b, "[]byte(%q)\n", a)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		return errors.Join(fmt.Errorf("write seed %s", name), err)
	}
	return nil
}
