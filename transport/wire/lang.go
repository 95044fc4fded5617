package wire

import (
	"path/filepath"
	"strings"
)

// Languages Kiln runs, in the order they are listed to users.
const (
	LangC      = "c"
	LangCPP    = "cpp"
	LangJava   = "java"
	LangPython = "python"
)

// Languages lists every supported language.
func Languages() []string { return []string{LangC, LangCPP, LangJava, LangPython} }

// LanguageOf returns the language of a source file from its extension, or ""
// when the extension is not one Kiln runs.
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
