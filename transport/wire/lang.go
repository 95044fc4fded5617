package wire

import (
	"path/filepath"
	"strings"
)

// The built-in languages, in the order they are listed to users. Slaves
// may announce others, and other extensions, from a languages file
// (docs/languages.md; Toolchain.Extensions): these names and LanguageOf
// are only what a peer knows without asking.
const (
	LangC      = "c"
	LangCPP    = "cpp"
	LangJava   = "java"
	LangPython = "python"
)

// Languages lists the built-in languages.
func Languages() []string { return []string{LangC, LangCPP, LangJava, LangPython} }

// LanguageOf returns the built-in language of a source file from its
// extension, or "" when it is not one of theirs (a configured language is
// found through Info, see client.Request.Language).
func LanguageOf(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".c":
		return LangC
	case ".cc", ".cpp", ".cxx", ".c++":
		return LangCPP
	case ".java":
		return LangJava
	case ".py":
		return LangPython
	}
	return ""
}
