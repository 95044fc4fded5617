package slave

import (
	"slices"
	"strings"
	"testing"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// TestAgentInlineAssign: over mutual TLS, a slave announces "inline" and
// runs a job whose source and stdin came inside the Assign; inline files
// whose SHA-256 does not match or that are sealed and tampered with fail
// their job at once and run nothing.
func TestAgentInlineAssign(t *testing.T) {
	needLang(t, wire.LangPython)
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	runSlave(t, m, sb) // FileTimeout 5 s: a failure below comes well before it
	ms := m.next(t)
	if !slices.Contains(ms.hello.Features, wire.FeatureInline) {
		t.Fatalf("hello features %v, want %q", ms.hello.Features, wire.FeatureInline)
	}
	assign := func(id string, src, stdin []byte, sealed bool) wire.Assign {
		a := wire.Assign{JobID: id, Attempt: 1, Language: wire.LangPython, FileName: "a.py",
			SourceSize: int64(len(src)), StdinSize: int64(len(stdin)), Sealed: sealed}
		a.Inline.Set(wire.FileSource, src, sealed)
		if len(stdin) > 0 {
			a.Inline.Set(wire.FileStdin, stdin, sealed)
		}
		return a
	}
	src := []byte("import sys\nprint('inline', sys.stdin.read().strip())")
	ms.assign(t, assign("j1", src, []byte("stdin\n"), false))
	res, out := ms.jobResult(t, "j1")
	if res.Status != wire.StatusOK || out[wire.StreamStdout] != "inline stdin\n" {
		t.Fatalf("j1: %+v, stdout %q", res, out[wire.StreamStdout])
	}

	fails := func(id string, a wire.Assign, want string) {
		t.Helper()
		ms.assign(t, a)
		res, out := ms.jobResult(t, id)
		if a.Sealed {
			out = nil // a sealed stdout holds its (sealed, empty) end message
		}
		if res.Status != wire.StatusInternalError || !strings.Contains(res.Detail, want) || out[wire.StreamStdout] != "" {
			t.Errorf("%s: %+v, stdout %q; want internal_error with %q", id, res, out[wire.StreamStdout], want)
		}
	}
	bad := assign("sum", src, nil, false)
	bad.Source = []byte(strings.Replace(string(src), "inline", "forged", 1))
	fails("sum", bad, "SHA-256 mismatch")

	// Sealed: ciphertext inline, no SHA-256; a flipped bit fails the AEAD.
	key := seal.NewContentKey()
	csrc, _ := seal.Seal(key, seal.LabelSource, []byte("print('sealed')"))
	wrapped, _ := seal.Wrap(key, sb.SealPublicKey(), seal.Context("sealed", "input"))
	sa := assign("sealed", csrc, nil, true)
	sa.WrappedKey = wrapped
	sa.ClientKey = sb.SealPublicKey()
	sa.Source[len(sa.Source)-1] ^= 1
	fails("sealed", sa, "sealed payload failed authentication")
}

// TestFilesInlineAndStreamed: a file that comes both inline in the Assign
// and on a stream, in either order, is an error of the job's files.
func TestFilesInlineAndStreamed(t *testing.T) {
	src := []byte("print(1)")
	a := wire.Assign{JobID: "j", SourceSize: int64(len(src))}
	a.Inline.Set(wire.FileSource, src, false)
	hdr := wire.NewFileHeader("j", wire.FileSource, "a.py", src)

	var streamFirst files
	streamFirst.add(hdr, src, nil)
	streamFirst.inline(a, a.Inline)
	var inlineFirst files
	inlineFirst.inline(a, a.Inline)
	inlineFirst.add(hdr, src, nil)
	for name, f := range map[string]files{"stream first": streamFirst, "inline first": inlineFirst} {
		if f.err == nil || !strings.Contains(f.err.Error(), "both inline") {
			t.Errorf("%s: err %v", name, f.err)
		}
	}
	var ok files
	ok.inline(a, a.Inline)
	if ok.err != nil || !ok.haveSource || string(ok.source) != string(src) {
		t.Errorf("inline only: %+v", ok)
	}
}
