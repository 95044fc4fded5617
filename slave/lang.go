package slave

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"kiln/transport/wire"
)

// maxFileName caps a submitted file name, in bytes.
const maxFileName = 128

// ErrBadFileName is returned for a file name that is unsafe or that its
// language cannot use (for Java, not a valid class name).
var ErrBadFileName = errors.New("bad file name")

// language is how Kiln builds and runs one language.
type language struct {
	name string
	// sourceName is the file name of the source inside the job directory.
	sourceName func(user string) (string, error)
	// compile is the compile command without the compiler path, or nil.
	compile func(src string) []string
	// run is the run command; tool is the toolchain path.
	run func(tool, src string, memBytes int64) []string
	// artifacts picks the compile outputs to cache among the directory's
	// entry names.
	artifacts func(names []string) []string
	// jvm marks a JVM language: no RLIMIT_AS, a heap flag instead.
	jvm bool
}

// languages is the table of everything Kiln runs.
var languages = map[string]*language{
	wire.LangC: {
		name:       wire.LangC,
		sourceName: userName("main.c"),
		compile: func(src string) []string {
			return []string{"-O2", "-pipe", "-std=gnu17", "-o", "main", src, "-lm"}
		},
		run:       func(_, _ string, _ int64) []string { return []string{"./main"} },
		artifacts: func([]string) []string { return []string{"main"} },
	},
	wire.LangCPP: {
		name:       wire.LangCPP,
		sourceName: userName("main.cpp"),
		compile: func(src string) []string {
			return []string{"-O2", "-pipe", "-std=gnu++17", "-o", "main", src}
		},
		run:       func(_, _ string, _ int64) []string { return []string{"./main"} },
		artifacts: func([]string) []string { return []string{"main"} },
	},
	wire.LangJava: {
		name:       wire.LangJava,
		sourceName: javaName,
		compile: func(src string) []string {
			return []string{"-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1", "-J-XX:-UsePerfData",
				"-J-Xmx512m", "-encoding", "UTF-8", "-d", ".", src}
		},
		run:       javaRun,
		artifacts: classFiles,
		jvm:       true,
	},
	wire.LangPython: {
		name:       wire.LangPython,
		sourceName: userName("main.py"),
		run:        func(tool, src string, _ int64) []string { return []string{tool, "-B", src} },
	},
}

// javaRun runs the class named after the source file. The JVM reserves
// far more address space than it uses, so memory is bounded by the heap
// (three quarters of the limit, the rest for metaspace, code and stacks).
func javaRun(javac, src string, mem int64) []string {
	heap := max(mem/4*3, 32<<20) >> 20
	return []string{javaBeside(javac), "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-XX:-UsePerfData", "-Xss64m", "-Xmx" + strconv.FormatInt(heap, 10) + "m",
		"-cp", ".", strings.TrimSuffix(src, ".java")}
}

func classFiles(names []string) []string {
	var out []string
	for _, n := range names {
		if strings.HasSuffix(n, ".class") {
			out = append(out, n)
		}
	}
	return out
}

// userName validates the user's file name and keeps it, so that compiler
// messages and tracebacks name the file the user knows. A name that is not a
// safe source name of the language is replaced with fallback.
func userName(fallback string) func(string) (string, error) {
	return func(user string) (string, error) {
		if err := checkFileName(user); err != nil {
			return "", err
		}
		if !strings.EqualFold(filepath.Ext(user), filepath.Ext(fallback)) && wire.LanguageOf(user) != wire.LanguageOf(fallback) {
			return fallback, nil
		}
		return user, nil
	}
}

// javaName keeps the user's file name: public class Hello lives in
// Hello.java. The base must be a Java identifier.
func javaName(user string) (string, error) {
	if err := checkFileName(user); err != nil {
		return "", err
	}
	class, ok := strings.CutSuffix(user, ".java")
	if !ok || !javaIdentifier(class) {
		return "", fmt.Errorf("%w: %q: a Java source must be named <Class>.java with a valid class name", ErrBadFileName, user)
	}
	return user, nil
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
