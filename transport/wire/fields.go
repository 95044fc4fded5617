package wire

import (
	"errors"
	"fmt"
	"slices"
)

// ErrFieldLimit reports a decoded message with a field longer, or a list
// with more entries, than its limit (see [FieldLimits]).
var ErrFieldLimit = errors.New("field over its limit")

// MaxItems is the most entries [Validate] accepts in one msgpack array or
// map, before anything is decoded: no Kiln message has a list near it, and
// it keeps a 1 MiB frame of empty strings from decoding into a million
// 16-byte string headers.
const MaxItems = 1024

// Per-field limits, checked by [Decode] on every message after it is
// decoded, so that what a peer can make the other side keep per message is
// a small constant rather than a multiple of the frame size. Payload fields
// (Output.Data, Result.CompileOutput, AdminReply fields) are bounded by the
// frame size only; inline files ([Inline]) by [MaxInline].
const (
	// MaxName bounds names: peers, slaves, masters (certificate names are
	// at most 64 bytes; the rest is room for growth).
	MaxName = 128
	// MaxShort bounds short words: role, version, language, compiler,
	// os, kernel, arch, sandbox, job ids, codes, states, feature names.
	MaxShort = 256
	// MaxText bounds free text: reasons, messages, details, a file name,
	// a toolchain path, one admin argument.
	MaxText = 4096
	// MaxKey bounds keys and wrapped keys (an X25519 key is 32 bytes, a
	// wrapped key under 200).
	MaxKey = 512
	// MaxCert bounds a DER certificate in a WrapRequest.
	MaxCert = 16 << 10
	// MaxFeatures, MaxToolchains, MaxArgs, MaxLanguages and MaxCompilers
	// bound the lists of Hello, Register, AdminRequest and Info.
	MaxFeatures   = 32
	MaxToolchains = 64
	MaxArgs       = 64
	MaxLanguages  = 64
	MaxCompilers  = MaxItems
)

// MaxHelloFrame caps the frame of a Hello, read before the peer is
// admitted: a Hello at every field limit is under 16 KiB, and a larger
// frame is refused from its length prefix, before its bytes are read.
const MaxHelloFrame = 64 << 10

// checker is implemented by every body with fields to check.
type checker interface{ checkFields(*fields) }

// fields collects the first field over its limit.
type fields struct{ err error }

func (f *fields) fail(name string, n, limit int, unit string) {
	if f.err == nil {
		f.err = fmt.Errorf("%w: %s has %d %s, at most %d", ErrFieldLimit, name, n, unit, limit)
	}
}

func (f *fields) str(name, v string, limit int) {
	if len(v) > limit {
		f.fail(name, len(v), limit, "bytes")
	}
}

func (f *fields) bin(name string, v []byte, limit int) {
	if len(v) > limit {
		f.fail(name, len(v), limit, "bytes")
	}
}

func (f *fields) count(name string, n, limit int) {
	if n > limit {
		f.fail(name, n, limit, "entries")
	}
}

// checkFields returns an error wrapping ErrFieldLimit when a field of v is
// over its limit.
func checkFields(v any) error {
	c, ok := v.(checker)
	if !ok {
		return nil
	}
	var f fields
	c.checkFields(&f)
	return f.err
}

func (h *Hello) checkFields(f *fields) {
	f.str("role", h.Role, MaxShort)
	f.str("name", h.Name, MaxName)
	f.str("version", h.Version, MaxShort)
	f.count("features", len(h.Features), MaxFeatures)
	for _, s := range h.Features {
		f.str("feature", s, MaxShort)
	}
}

func (w *Welcome) checkFields(f *fields) {
	f.str("session", w.SessionID, MaxShort)
	f.str("master", w.Master, MaxName)
	f.count("features", len(w.Features), MaxFeatures)
	for _, s := range w.Features {
		f.str("feature", s, MaxShort)
	}
}

func (r *Refused) checkFields(f *fields) {
	f.str("code", r.Code, MaxShort)
	f.str("reason", r.Reason, MaxText)
}

func (r *Register) checkFields(f *fields) {
	f.count("toolchains", len(r.Toolchains), MaxToolchains)
	for _, t := range r.Toolchains {
		f.str("toolchain language", t.Language, MaxShort)
		f.str("toolchain compiler", t.Compiler, MaxShort)
		f.str("toolchain path", t.Path, MaxText)
		t.checkJudgeFields(f)
	}
	f.str("os", r.OS, MaxShort)
	f.str("kernel", r.Kernel, MaxShort)
	f.str("arch", r.Arch, MaxShort)
	f.str("sandbox", r.Sandbox, MaxText)
	f.bin("seal_key", r.SealKey, MaxKey)
	f.count("held", len(r.Held), MaxHeld)
	for i := range r.Held {
		r.Held[i].checkFields(f)
	}
}

func (s *Submit) checkFields(f *fields) {
	f.str("lang", s.Language, MaxShort)
	f.str("file", s.FileName, MaxText)
	f.bin("client_key", s.ClientKey, MaxKey)
	f.bin("key_nonce", s.KeyNonce, MaxKey)
	f.bin("wrap_nonce", s.WrapNonce, MaxKey)
	f.count("wraps", len(s.Wraps), MaxWraps)
	for i := range s.Wraps {
		s.Wraps[i].checkFields(f)
	}
	f.count("options", len(s.Options), MaxOptions)
	for _, o := range s.Options {
		f.str("option", o, MaxShort)
	}
	s.Inline.checkFields(f)
}

// checkFields bounds the inline files: each and both together at most
// MaxInline bytes, each sum at most 64 bytes (CheckInline wants 32).
func (in *Inline) checkFields(f *fields) {
	f.bin("source", in.Source, MaxInline)
	f.bin("stdin", in.Stdin, MaxInline)
	if n := in.Size(); n > MaxInline {
		f.fail("inline files", n, MaxInline, "bytes")
	}
	f.bin("source_sha256", in.SourceSHA256, 64)
	f.bin("stdin_sha256", in.StdinSHA256, 64)
}

func (a *Accepted) checkFields(f *fields) { f.str("job", a.JobID, MaxShort) }

func (e *Error) checkFields(f *fields) {
	f.str("code", e.Code, MaxShort)
	f.str("msg", e.Message, MaxText)
}

func (j *JobState) checkFields(f *fields) {
	f.str("job", j.JobID, MaxShort)
	f.str("state", j.State, MaxShort)
	f.str("slave", j.Slave, MaxName)
	f.str("detail", j.Detail, MaxText)
}

func (a *Assign) checkFields(f *fields) {
	f.str("job", a.JobID, MaxShort)
	f.str("lang", a.Language, MaxShort)
	f.str("file", a.FileName, MaxText)
	f.bin("wrapped_key", a.WrappedKey, MaxKey)
	f.bin("wrap_nonce", a.WrapNonce, MaxKey)
	f.bin("client_key", a.ClientKey, MaxKey)
	f.str("owner", a.Owner, MaxShort)
	f.count("options", len(a.Options), MaxOptions)
	for _, o := range a.Options {
		f.str("option", o, MaxShort)
	}
	a.Inline.checkFields(f)
}

func (o *Output) checkFields(f *fields) {
	f.str("job", o.JobID, MaxShort)
	f.bin("key", o.Key, MaxKey)
}

func (r *Result) checkFields(f *fields) {
	f.str("job", r.JobID, MaxShort)
	f.str("status", r.Status, MaxShort)
	f.str("slave", r.Slave, MaxName)
	f.str("lang", r.Language, MaxShort)
	f.str("compiler", r.Compiler, MaxShort)
	f.str("detail", r.Detail, MaxText)
	f.bin("key", r.Key, MaxKey)
	f.bin("verdict", r.Verdict, 2*MaxText)
	if r.Tests != nil {
		r.Tests.checkFields(f)
	}
}

func (c *Cancel) checkFields(f *fields) { f.str("job", c.JobID, MaxShort) }

func (l *Load) checkFields(f *fields) { f.str("health", l.Health, MaxText) }

func (i *Info) checkFields(f *fields) {
	f.str("master", i.Master, MaxName)
	f.str("version", i.Version, MaxShort)
	f.count("languages", len(i.Languages), MaxLanguages)
	for _, l := range i.Languages {
		f.str("language", l.Language, MaxShort)
		f.count("compilers", len(l.Compilers), MaxCompilers)
		for _, c := range l.Compilers {
			f.str("compiler", c, MaxShort)
		}
		f.count("extensions", len(l.Extensions), MaxOptions)
		f.count("options", len(l.Options), MaxItems)
		for _, o := range append(slices.Clip(l.Extensions), l.Options...) {
			f.str("option", o, MaxShort)
		}
	}
	f.count("seal_slaves", len(i.SealSlaves), MaxWraps)
	for _, s := range i.SealSlaves {
		f.str("seal slave", s.Name, MaxName)
		f.bin("seal slave cert", s.Cert, MaxCert)
	}
}

func (a *AdminRequest) checkFields(f *fields) {
	f.count("args", len(a.Args), MaxArgs)
	for _, s := range a.Args {
		f.str("arg", s, MaxText)
	}
}

func (w *WrapRequest) checkFields(f *fields) {
	f.str("job", w.JobID, MaxShort)
	f.str("slave", w.Slave, MaxName)
	f.bin("seal_key", w.SealKey, MaxKey)
	f.bin("slave_cert", w.SlaveCert, MaxCert)
}

func (w *Wrapped) checkFields(f *fields) {
	f.str("job", w.JobID, MaxShort)
	f.bin("wrapped_key", w.WrappedKey, MaxKey)
	f.str("refused", w.Refused, MaxText)
}

func (h *FileHeader) checkFields(f *fields) {
	f.str("job", h.JobID, MaxShort)
	f.str("kind", h.Kind, MaxShort)
	f.str("name", h.Name, MaxText)
	f.bin("sha256", h.SHA256, 64)
}
