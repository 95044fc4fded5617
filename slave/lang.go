package slave

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// pickOptions returns the submitter's pick in each option group it
// picked from (nil for none: every group takes its default, see
// [cmdVars]). An option outside every group, or two options of one
// group, is refused.
func (l *language) pickOptions(opts []string) (map[string]string, error) {
	var picked map[string]string
	for _, o := range opts {
		found := false
		for _, g := range l.spec.Options {
			if !slices.Contains(g.Allowed, o) {
				continue
			}
			if prev, ok := picked[g.Name]; ok {
				return nil, fmt.Errorf("%w: %q and %q are both %s options", ErrOption, prev, o, g.Name)
			}
			if picked == nil {
				picked = map[string]string{}
			}
			picked[g.Name], found = o, true
		}
		if !found {
			return nil, fmt.Errorf("%w: %q (%s allows %s)", ErrOption, o, l.name, strings.Join(l.spec.allowedOptions(), " "))
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
	v := cmdVars{l: l, tool: tool, src: src, picked: picked}
	return expand(l.spec.Compile, v.lookup), nil
}

// run returns the run command. memBytes sets {heap_mb}: three quarters of
// the limit (the rest for metaspace, code and stacks), at least 32 MiB.
func (l *language) run(tool, src string, memBytes int64) []string {
	v := cmdVars{l: l, tool: tool, src: src, memBytes: memBytes}
	return expand(l.spec.Run, v.lookup)
}

// cmdVars are the values of one job's command placeholders, each made
// only when its placeholder is met: a job builds its command lines on its
// path (a map of them and a regexp cost a cached C job about 4 µs and 23
// allocations; BenchmarkLanguageCommands).
type cmdVars struct {
	l         *language
	tool, src string
	memBytes  int64
	picked    map[string]string // option group name -> the submitter's pick
}

// lookup returns the value of placeholder h, "" for one it does not know
// (the languages file's commands are checked for those when parsed).
func (v cmdVars) lookup(h string) string {
	switch h {
	case "{tool}":
		return v.tool
	case "{tool_dir}":
		return filepath.Dir(v.tool)
	case "{src}":
		return v.src
	case "{class}":
		return strings.TrimSuffix(v.src, filepath.Ext(v.src))
	case "{heap_mb}":
		return strconv.FormatInt(max(v.memBytes/4*3, 32<<20)>>20, 10)
	}
	group, ok := strings.CutPrefix(h, "{opt.")
	if !ok {
		return ""
	}
	group = strings.TrimSuffix(group, "}")
	if o, ok := v.picked[group]; ok {
		return o
	}
	for _, g := range v.l.spec.Options {
		if g.Name == group {
			return g.Default
		}
	}
	return ""
}

// expand replaces the placeholders of each argument with their values.
func expand(argv []string, lookup func(placeholder string) string) []string {
	out := make([]string, 0, len(argv))
	for _, a := range argv {
		out = append(out, expandArg(a, lookup))
	}
	return out
}

// expandArg replaces each placeholder of a with its value. The
// placeholders are placeholderRe's matches ("{", no brace, "}", leftmost
// first), found by a scan instead of the regexp.
func expandArg(a string, lookup func(string) string) string {
	if len(a) > 1 && a[0] == '{' && a[len(a)-1] == '}' && strings.IndexAny(a[1:], "{}") == len(a)-2 {
		return lookup(a) // the whole argument is one placeholder
	}
	var b strings.Builder
	last := 0
	for i := strings.IndexByte(a, '{'); i >= 0 && i < len(a); {
		j := i + 1
		for j < len(a) && a[j] != '{' && a[j] != '}' {
			j++
		}
		switch {
		case j == len(a): // no closing brace: no more placeholders
			i = j
		case a[j] == '{': // a brace before the closing one: start again there
			i = j
		default:
			b.WriteString(a[last:i])
			b.WriteString(lookup(a[i : j+1]))
			last = j + 1
			if k := strings.IndexByte(a[last:], '{'); k >= 0 {
				i = last + k
			} else {
				i = len(a)
			}
		}
	}
	if last == 0 {
		return a
	}
	b.WriteString(a[last:])
	return b.String()
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
	if s == "" || javaKeywords()[s] {
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

var javaKeywords = sync.OnceValue(func() map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(`abstract assert boolean break byte case catch char class const
		continue default do double else enum extends final finally float for goto if implements
		import instanceof int interface long native new package private protected public return
		short static strictfp super switch synchronized this throw throws transient try void
		volatile while true false null var record yield sealed permits`) {
		m[k] = true
	}
	return m
})
