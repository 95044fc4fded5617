package tui

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// maxSourceLines bounds the source lines shown under a compile error.
const maxSourceLines = 12

// lineRefs finds "file:LINE:" (gcc, g++, javac) and `File "file", line LINE`
// (python) in a compiler's output.
var lineRefs = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?m)([^\s:"]+):(\d+)(?::\d+)?:|File "([^"]+)", line (\d+)`)
})

// quoted finds the source lines gcc and g++ already quote: "    3 | text".
var quoted = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?m)^\s*(\d+) \| `) })

// SourceLines returns the lines of src that a compiler's output names,
// numbered as "   12 | text", in the order first named, leaving out lines
// the output already quotes. The slave may rename the file (main.c), so any
// file with the extension of name counts: a job has one source file.
func SourceLines(output []byte, name string, src []byte) []string {
	lines := strings.Split(string(src), "\n")
	seen := map[int]bool{}
	for _, m := range quoted().FindAllStringSubmatch(string(output), -1) {
		n, _ := strconv.Atoi(m[1])
		seen[n] = true
	}
	var out []string
	for _, m := range lineRefs().FindAllStringSubmatch(string(output), -1) {
		file, num := m[1], m[2]
		if file == "" {
			file, num = m[3], m[4]
		}
		if !sameFile(file, name) {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > len(lines) || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, fmt.Sprintf("%5d | %s", n, strings.TrimRight(lines[n-1], "\r")))
		if len(out) == maxSourceLines {
			break
		}
	}
	if len(out) > 0 {
		out = append([]string{"Lines named by the compiler:"}, out...)
	}
	return out
}

func sameFile(ref, name string) bool {
	return filepath.Ext(ref) == filepath.Ext(name)
}
