package slave

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"kiln/transport/wire"
)

// compareOutput judges a program's output against the expected one in
// mode (wire.CompareExact, CompareDefault or CompareTokens). It returns
// whether they match and, when not, where they first differ.
func compareOutput(mode string, expected, actual []byte, relTol, absTol float64) (bool, string) {
	switch mode {
	case wire.CompareExact:
		if bytes.Equal(expected, actual) {
			return true, ""
		}
		i := 0
		for i < len(expected) && i < len(actual) && expected[i] == actual[i] {
			i++
		}
		return false, fmt.Sprintf("byte %d differs (expected %d bytes, got %d)", i, len(expected), len(actual))
	case wire.CompareTokens:
		return compareTokens(expected, actual, relTol, absTol)
	}
	return compareLines(expected, actual)
}

// compareLines compares line by line, ignoring the white space at the end
// of each line (so a CR of CRLF too) and blank lines at the end.
func compareLines(expected, actual []byte) (bool, string) {
	want, got := trimmedLines(expected), trimmedLines(actual)
	for i := range max(len(want), len(got)) {
		switch {
		case i >= len(want):
			return false, fmt.Sprintf("line %d: expected end of output, got %s", i+1, excerpt(got[i]))
		case i >= len(got):
			return false, fmt.Sprintf("line %d: expected %s, got end of output", i+1, excerpt(want[i]))
		case !bytes.Equal(want[i], got[i]):
			return false, fmt.Sprintf("line %d: expected %s, got %s", i+1, excerpt(want[i]), excerpt(got[i]))
		}
	}
	return true, ""
}

// trimmedLines splits b into lines without their trailing white space,
// dropping the blank lines at the end.
func trimmedLines(b []byte) [][]byte {
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines {
		lines[i] = bytes.TrimRight(l, " \t\r\v\f")
	}
	for len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// compareTokens compares white-space separated tokens; two tokens that
// both read as numbers match when they differ by at most absTol or by at
// most relTol relative to the expected one.
func compareTokens(expected, actual []byte, relTol, absTol float64) (bool, string) {
	want, got := bytes.Fields(expected), bytes.Fields(actual)
	for i := range max(len(want), len(got)) {
		switch {
		case i >= len(want):
			return false, fmt.Sprintf("token %d: expected end of output, got %s", i+1, excerpt(got[i]))
		case i >= len(got):
			return false, fmt.Sprintf("token %d: expected %s, got end of output", i+1, excerpt(want[i]))
		case !tokenMatch(want[i], got[i], relTol, absTol):
			return false, fmt.Sprintf("token %d: expected %s, got %s", i+1, excerpt(want[i]), excerpt(got[i]))
		}
	}
	return true, ""
}

func tokenMatch(want, got []byte, relTol, absTol float64) bool {
	if bytes.Equal(want, got) {
		return true
	}
	w, err1 := strconv.ParseFloat(string(want), 64)
	g, err2 := strconv.ParseFloat(string(got), 64)
	if err1 != nil || err2 != nil || math.IsNaN(w) || math.IsNaN(g) || math.IsInf(w, 0) || math.IsInf(g, 0) {
		return false
	}
	d := math.Abs(w - g)
	return d == 0 || d <= absTol || d <= relTol*math.Abs(w)
}

// excerpt quotes the start of b for a verdict's detail.
func excerpt(b []byte) string {
	const n = 40
	if len(b) > n {
		return strconv.Quote(string(b[:n])) + "..."
	}
	return strconv.Quote(string(b))
}
