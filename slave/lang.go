package slave

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxFileName caps a submitted file name, in bytes.
const maxFileName = 128

// ErrBadFileName is returned for a file name that is unsafe or that its
// language cannot use (for Java, not a valid class name).
var ErrBadFileName = errors.New("bad file name")

// language is how Kiln builds and runs one language: a checked
// [LanguageSpec] and its hash.
type language struct {
	name string
	spec LanguageSpec
	hash string
}

func newLanguage(s LanguageSpec) *language {
	return &language{name: s.Name, spec: s, hash: s.Hash()}
}

// jvm reports a runtime that gets no RLIMIT_AS (see SandboxSpec).
func (l *language) jvm() bool { return l.spec.Sandbox.NoAddressSpaceLimit }

// compiled reports whether the language has a compile step.
func (l *language) compiled() bool { return len(l.spec.Compile) > 0 }

// sourceName is the file name of the source inside the job directory.
func (l *language) sourceName(user string) (string, error) {
	if l.spec.Source.ClassName {
		return classSourceName(user, l.spec.Extensions)
	}
	if err := checkFileName(user); err != nil {
		return "", err
	}
	if !l.spec.hasExtension(user) {
		return l.spec.Source.Name, nil
	}
	return user, nil
}

// ErrOption is returned for a compiler option the language does not allow.
var ErrOption = errors.New("compiler option not allowed")

// pickOptions returns the value of each option group: the submitter's
// pick, or the group's default. An option outside every group, or two
// options of one group, is refused.
func (l *language) pickOptions(opts []string) (map[string]string, error) {
	picked := map[string]string{}
	for _, o := range opts {
		found := false
		for _, g := range l.spec.Options {
			if !slices.Contains(g.Allowed, o) {
				continue
			}
			if prev, ok := picked[g.Name]; ok {
				return nil, fmt.Errorf("%w: %q and %q are both %s options", ErrOption, prev, o, g.Name)
			}
			picked[g.Name], found = o, true
		}
		if !found {
			return nil, fmt.Errorf("%w: %q (%s allows %s)", ErrOption, o, l.name, strings.Join(l.spec.allowedOptions(), " "))
		}
	}
	for _, g := range l.spec.Options {
		if _, ok := picked[g.Name]; !ok {
			picked[g.Name] = g.Default
		}
	}
	return picked, nil
}

// compile returns the compile command, the tool path first.
func (l *language) compile(tool, src string, opts []string) ([]string, error) {
	picked, err := l.pickOptions(opts)
	if err != nil {
		return nil, err
	}
	vars := l.vars(tool, src, 0)
	for k, v := range picked {
		vars["{opt."+k+"}"] = v
	}
	return expand(l.spec.Compile, vars), nil
}

// run returns the run command. memBytes sets {heap_mb}: three quarters of
// the limit (the rest for metaspace, code and stacks), at least 32 MiB.
func (l *language) run(tool, src string, memBytes int64) []string {
	return expand(l.spec.Run, l.vars(tool, src, memBytes))
}

func (l *language) vars(tool, src string, memBytes int64) map[string]string {
	ext := filepath.Ext(src)
	return map[string]string{
		"{tool}": tool, "{tool_dir}": filepath.Dir(tool), "{src}": src,
		"{class}": strings.TrimSuffix(src, ext), "{heap_mb}": strconv.FormatInt(max(memBytes/4*3, 32<<20)>>20, 10),
	}
}

func expand(argv []string, vars map[string]string) []string {
	out := make([]string, 0, len(argv))
	for _, a := range argv {
		out = append(out, placeholderRe.ReplaceAllStringFunc(a, func(h string) string { return vars[h] }))
	}
	return out
}

// artifacts picks the compile outputs to cache among the directory's
// entry names.
func (l *language) artifacts(names []string) []string {
	var out []string
	for _, n := range names {
		for _, p := range l.spec.Artifacts {
			if ok, _ := filepath.Match(p, n); ok {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// classSourceName keeps the user's file name: public class Hello lives in
// Hello.java. The base must be a Java identifier.
func classSourceName(user string, exts []string) (string, error) {
	if err := checkFileName(user); err != nil {
		return "", err
	}
	for _, ext := range exts {
		if class, ok := strings.CutSuffix(user, ext); ok && javaIdentifier(class) {
			return user, nil
		}
	}
	return "", fmt.Errorf("%w: %q: a Java source must be named <Class>.java with a valid class name", ErrBadFileName, user)
}

// checkFileName rejects names that could escape or confuse the job
// directory: empty, too long, path separators, "." and "..", NUL and other
// control characters, invalid UTF-8, a leading dash.
func checkFileName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w: %q: %s", ErrBadFileName, name, why) }
	switch {
	case name == "":
		return bad("empty")
	case len(name) > maxFileName:
		return bad("too long")
	case !utf8.ValidString(name):
		return bad("not UTF-8")
	case name == "." || name == ".." || strings.Contains(name, ".."):
		return bad("contains ..")
	case strings.ContainsAny(name, "/\\"):
		return bad("contains a path separator")
	case strings.HasPrefix(name, "-"):
		return bad("starts with -")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return bad("contains a control character")
		}
	}
	return nil
}

// safeBaseName reports whether name is a plain file name in a directory.
func safeBaseName(name string) bool {
	return checkFileName(name) == nil && filepath.Base(name) == name && name != string(os.PathSeparator)
}

// javaIdentifier reports whether s is a Java identifier and not a keyword
// or literal.
func javaIdentifier(s string) bool {
	if s == "" || javaKeywords[s] {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || r == '$' || unicode.IsLetter(r):
		case i > 0 && unicode.IsDigit(r):
		default:
			return false
		}
	}
	return s != "_"
}

var javaKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(`abstract assert boolean break byte case catch char class const
		continue default do double else enum extends final finally float for goto if implements
		import instanceof int interface long native new package private protected public return
		short static strictfp super switch synchronized this throw throws transient try void
		volatile while true false null var record yield sealed permits`) {
		m[k] = true
	}
	return m
}()
