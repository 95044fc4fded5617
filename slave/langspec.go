package slave

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"sync"

	"kiln/transport/wire"
)

// ErrLanguagesFile is wrapped by every error about a languages file.
var ErrLanguagesFile = errors.New("bad languages file")

// builtinLanguages is the built-in table (C, C++, Java, Python), in the
// languages file format of docs/languages.md.
//
//go:embed languages.json
var builtinLanguages []byte

// LanguageSpec describes how a slave detects, builds and runs one
// language. It is one entry of a languages file (docs/languages.md).
type LanguageSpec struct {
	Name       string       `json:"name"`
	Extensions []string     `json:"extensions"`
	Detect     DetectSpec   `json:"detect"`
	Source     SourceSpec   `json:"source"`
	Options    []OptionSpec `json:"options,omitempty"`
	Compile    []string     `json:"compile,omitempty"`
	Run        []string     `json:"run"`
	Artifacts  []string     `json:"artifacts,omitempty"`
	Env        []string     `json:"env,omitempty"`
	Limits     LimitsSpec   `json:"limits,omitzero"`
	Sandbox    SandboxSpec  `json:"sandbox,omitzero"`
	// MemoryErrors are stderr texts that mean the program ran out of memory.
	MemoryErrors []string `json:"memory_errors,omitempty"`
}

// DetectSpec finds a language's toolchain on the host.
type DetectSpec struct {
	// Tools are tried in order: an absolute path (a glob pattern picks
	// its last match), or a name looked up on PATH. The first that is an
	// executable (after symlinks) wins.
	Tools []string `json:"tools"`
	// Version are the arguments that make the tool print its version;
	// the first line of the output (after VersionPrefix and a space) is
	// the compiler announced. Empty: the tool's base name.
	Version       []string `json:"version,omitempty"`
	VersionPrefix string   `json:"version_prefix,omitempty"`
	// Requires are other executables the language needs ({tool_dir}
	// expands to the tool's directory).
	Requires []string `json:"requires,omitempty"`
	// ScriptProbe, for a tool that is a "#!" script (a pyenv shim), are
	// the arguments that make it print the real interpreter's path.
	// Without it a script is skipped.
	ScriptProbe []string `json:"script_probe,omitempty"`
}

// SourceSpec says what the source file is called in the work directory.
type SourceSpec struct {
	// Name is used when the user's file name does not end in one of the
	// language's extensions; otherwise the user's name is kept.
	Name string `json:"name,omitempty"`
	// ClassName keeps the user's name, which must be <Identifier><ext>
	// with a Java identifier (public class Hello lives in Hello.java).
	ClassName bool `json:"class_name,omitempty"`
}

// OptionSpec is a group of compiler options of which a submitter picks at
// most one; {opt.NAME} in the compile command expands to the pick, or to
// Default.
type OptionSpec struct {
	Name    string   `json:"name"`
	Default string   `json:"default"`
	Allowed []string `json:"allowed"`
}

// LimitsSpec are a language's default and maximal job limits; zero
// fields take the executor's.
type LimitsSpec struct {
	Default LimitSpec `json:"default,omitzero"`
	Max     LimitSpec `json:"max,omitzero"`
}

// LimitSpec is one set of limits.
type LimitSpec struct {
	TimeMs      int64 `json:"time_ms,omitempty"`
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
	OutputBytes int64 `json:"output_bytes,omitempty"`
}

func (l LimitSpec) job() wire.JobLimits {
	return wire.JobLimits{TimeMs: l.TimeMs, MemoryBytes: l.MemoryBytes, OutputBytes: l.OutputBytes}
}

// SandboxSpec are a language's sandbox needs.
type SandboxSpec struct {
	// Procs bounds processes and threads of a run (default 256), and
	// CompileProcs those of a compile (default: no extra bound).
	Procs        int `json:"procs,omitempty"`
	CompileProcs int `json:"compile_procs,omitempty"`
	// NoAddressSpaceLimit: a runtime (the JVM) that reserves far more
	// address space than it uses; memory is bounded by the cgroup and by
	// the heap flag of its run command ({heap_mb}).
	NoAddressSpaceLimit bool `json:"no_address_space_limit,omitempty"`
	// CompileTimeMs and CompileMemoryBytes bound the compile step
	// (default 60 s and 2 GiB).
	CompileTimeMs      int64 `json:"compile_time_ms,omitempty"`
	CompileMemoryBytes int64 `json:"compile_memory_bytes,omitempty"`
}

// offError is an error at an offset of a languages file.
type offError struct {
	off int64
	err error
}

// splitLanguages reads the top level of a languages file, an object with
// one key, "languages", a list of objects, and returns each entry with its
// offset.
func splitLanguages(data []byte) (raws []json.RawMessage, offs []int64, oe *offError) {
	dec := json.NewDecoder(bytes.NewReader(data))
	fail := func(err error) ([]json.RawMessage, []int64, *offError) {
		return nil, nil, &offError{jsonErrorOffset(err, dec), err}
	}
	expect := func(want json.Delim) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); !ok || d != want {
			return fmt.Errorf("want %q, found %v", want, tok)
		}
		return nil
	}
	if err := expect('{'); err != nil {
		return fail(err)
	}
	seen := false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		if key != "languages" || seen {
			return fail(fmt.Errorf("unknown or repeated key %v (the file holds one key, \"languages\")", key))
		}
		seen = true
		if err := expect('['); err != nil {
			return fail(err)
		}
		for dec.More() {
			off := skipSpace(data, dec.InputOffset())
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return fail(err)
			}
			raws, offs = append(raws, raw), append(offs, off)
		}
		if err := expect(']'); err != nil {
			return fail(err)
		}
	}
	if err := expect('}'); err != nil {
		return fail(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail(errors.New("data after the top-level object"))
	}
	return raws, offs, nil
}

// skipSpace returns the offset of the first byte at or after off that is
// not JSON white space or a comma.
func skipSpace(data []byte, off int64) int64 {
	for off < int64(len(data)) && strings.IndexByte(" \t\r\n,", data[off]) >= 0 {
		off++
	}
	return off
}

// Placeholders a command may hold.
var (
	// The regexps are compiled when first used, not when any kiln
	// command starts: most never parse a languages file.
	placeholderRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\{[^{}]*\}`) })
	compileHolder = map[string]bool{"{tool}": true, "{tool_dir}": true, "{src}": true, "{class}": true}
	runHolder     = map[string]bool{"{tool}": true, "{tool_dir}": true, "{src}": true, "{class}": true, "{heap_mb}": true}
	langNameRe    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9+_-]{0,31}$`) })
	extRe         = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\.[A-Za-z0-9+_-]{1,16}$`) })
)

// ParseLanguages reads a languages file. Every error wraps
// [ErrLanguagesFile] and names name, the line and the reason.
func ParseLanguages(name string, data []byte) ([]LanguageSpec, error) {
	bad := func(off int64, format string, args ...any) error {
		return fmt.Errorf("%w: %s:%d: %s", ErrLanguagesFile, name, lineAt(data, off), fmt.Sprintf(format, args...))
	}
	raws, offs, err := splitLanguages(data)
	if err != nil {
		return nil, bad(err.off, "%v", err.err)
	}
	if len(raws) == 0 {
		return nil, bad(0, "no languages")
	}
	var specs []LanguageSpec
	seen := map[string]bool{}
	for i, raw := range raws {
		off := offs[i]
		d := json.NewDecoder(bytes.NewReader(raw))
		d.DisallowUnknownFields()
		var s LanguageSpec
		if err := d.Decode(&s); err != nil {
			return nil, bad(off+jsonErrorOffset(err, d), "language %d: %v", i+1, err)
		}
		if err := s.check(); err != nil {
			return nil, bad(off, "language %d (%q): %v", i+1, s.Name, err)
		}
		if seen[s.Name] {
			return nil, bad(off, "language %q listed twice", s.Name)
		}
		seen[s.Name] = true
		specs = append(specs, s)
	}
	return specs, nil
}

// ReadLanguages reads a languages file from disk (see [ParseLanguages]).
func ReadLanguages(file string) ([]LanguageSpec, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLanguagesFile, err)
	}
	return ParseLanguages(file, data)
}

// BuiltinLanguages returns the built-in table: C, C++, Java and Python.
func BuiltinLanguages() []LanguageSpec {
	specs, err := ParseLanguages("builtin", builtinLanguages)
	if err != nil {
		panic("slave: the built-in languages do not parse: " + err.Error())
	}
	return specs
}

// MergeLanguages returns base with each of extra replacing the entry of
// the same name or added after them.
func MergeLanguages(base, extra []LanguageSpec) []LanguageSpec {
	out := slices.Clone(base)
	for _, e := range extra {
		if i := slices.IndexFunc(out, func(b LanguageSpec) bool { return b.Name == e.Name }); i >= 0 {
			out[i] = e
		} else {
			out = append(out, e)
		}
	}
	return out
}

func jsonErrorOffset(err error, dec *json.Decoder) int64 {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return syn.Offset
	case errors.As(err, &typ):
		return typ.Offset
	}
	return dec.InputOffset()
}

func lineAt(data []byte, off int64) int {
	off = min(max(off, 0), int64(len(data)))
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// check validates one entry.
func (s *LanguageSpec) check() error {
	switch {
	case !langNameRe().MatchString(s.Name):
		return fmt.Errorf("name must match %s", langNameRe())
	case len(s.Extensions) == 0 || len(s.Extensions) > wire.MaxOptions:
		return fmt.Errorf("needs 1 to %d extensions", wire.MaxOptions)
	case len(s.Detect.Tools) == 0:
		return errors.New("detect.tools is empty")
	case len(s.Run) == 0:
		return errors.New("run is empty")
	case s.Source.Name == "" && !s.Source.ClassName:
		return errors.New("source needs a name or class_name")
	case s.Source.Name != "" && s.Source.ClassName:
		return errors.New("source has both a name and class_name")
	}
	for _, e := range s.Extensions {
		if !extRe().MatchString(e) {
			return fmt.Errorf("extension %q must look like .ext", e)
		}
	}
	if s.Source.Name != "" {
		if err := checkFileName(s.Source.Name); err != nil {
			return fmt.Errorf("source.name: %w", err)
		}
		if !s.hasExtension(s.Source.Name) {
			return fmt.Errorf("source.name %q does not end in one of the extensions", s.Source.Name)
		}
	}
	for _, t := range s.Detect.Tools {
		if t == "" || (strings.Contains(t, "/") && !path.IsAbs(t)) {
			return fmt.Errorf("detect.tools: %q is neither an absolute path nor a command name", t)
		}
	}
	for _, a := range s.Artifacts {
		if _, err := path.Match(a, ""); err != nil || strings.Contains(a, "/") || a == "" {
			return fmt.Errorf("artifact %q is not a file name pattern", a)
		}
	}
	if len(s.Compile) > 0 && len(s.Artifacts) == 0 {
		return errors.New("a compiled language needs artifacts (the files the compile makes)")
	}
	if err := s.checkOptions(); err != nil {
		return err
	}
	if err := checkCommand("compile", s.Compile, compileHolder, s.optionNames()); err != nil {
		return err
	}
	if err := checkCommand("run", s.Run, runHolder, nil); err != nil {
		return err
	}
	for _, e := range s.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return fmt.Errorf("env %q is not NAME=VALUE", e)
		}
	}
	return s.checkLimits()
}

func (s *LanguageSpec) checkOptions() error {
	groups := map[string]bool{}
	all := map[string]bool{}
	for _, o := range s.Options {
		if !langNameRe().MatchString(o.Name) || groups[o.Name] {
			return fmt.Errorf("option group %q: bad or repeated name", o.Name)
		}
		groups[o.Name] = true
		if !slices.Contains(o.Allowed, o.Default) {
			return fmt.Errorf("option group %q: default %q is not allowed", o.Name, o.Default)
		}
		for _, a := range o.Allowed {
			if !strings.HasPrefix(a, "-") || strings.ContainsAny(a, " \t\n\x00") || all[a] {
				return fmt.Errorf("option group %q: option %q must start with -, hold no space and appear once", o.Name, a)
			}
			all[a] = true
		}
	}
	if len(s.Compile) == 0 && len(s.Options) > 0 {
		return errors.New("options without a compile command")
	}
	return nil
}

func (s *LanguageSpec) optionNames() map[string]bool {
	m := map[string]bool{}
	for _, o := range s.Options {
		m["{opt."+o.Name+"}"] = true
	}
	return m
}

func checkCommand(what string, argv []string, allowed, opts map[string]bool) error {
	for _, a := range argv {
		for _, h := range placeholderRe().FindAllString(a, -1) {
			if !allowed[h] && !opts[h] {
				return fmt.Errorf("%s: unknown placeholder %s in %q", what, h, a)
			}
			if opts[h] && a != h {
				return fmt.Errorf("%s: option placeholder %s must be a whole argument", what, h)
			}
		}
	}
	return nil
}

func (s *LanguageSpec) checkLimits() error {
	for _, l := range []LimitSpec{s.Limits.Default, s.Limits.Max} {
		if l.TimeMs < 0 || l.MemoryBytes < 0 || l.OutputBytes < 0 {
			return errors.New("limits must not be negative")
		}
	}
	sb := s.Sandbox
	if sb.Procs < 0 || sb.CompileProcs < 0 || sb.CompileTimeMs < 0 || sb.CompileMemoryBytes < 0 {
		return errors.New("sandbox values must not be negative")
	}
	return nil
}

func (s *LanguageSpec) hasExtension(name string) bool {
	for _, e := range s.Extensions {
		if len(name) > len(e) && strings.EqualFold(name[len(name)-len(e):], e) {
			return true
		}
	}
	return false
}

// Hash is the SHA-256 of the descriptor's canonical JSON: a cached build
// is reused only under the same descriptor.
func (s *LanguageSpec) Hash() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic("slave: a language spec of plain fields does not encode: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// allowedOptions lists every option a submitter may pick.
func (s *LanguageSpec) allowedOptions() []string {
	var out []string
	for _, o := range s.Options {
		out = append(out, o.Allowed...)
	}
	return out
}
