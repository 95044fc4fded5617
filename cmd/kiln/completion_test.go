package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletionBash sources the generated bash completion and completes
// what a user types: commands, flags (the same as --help lists), certs
// subcommands and admin command words.
func TestCompletionBash(t *testing.T) {
	code, script, errs := runCLI(context.Background(), t, nil, "completion", "bash")
	if code != 0 {
		t.Fatalf("kiln completion bash: exit %d, %s", code, errs)
	}
	f := writeFile(t, t.TempDir(), "kiln.bash", script)
	for _, tc := range []struct{ words, want string }{
		{"kiln ru", "run"},
		{"kiln run --time-l", "--time-limit"},
		{"kiln master --max-t", "--max-time"},
		{"kiln certs is", "issue"},
		{"kiln certs issue --ver", "--version"},
		{"kiln admin ke", "keys"},
		{"kiln completion fi", "fish"},
	} {
		words := strings.Fields(tc.words)
		sh := "source " + f + "; COMP_WORDS=(" + tc.words + "); COMP_CWORD=" + string(rune('0'+len(words)-1)) +
			`; _kiln; echo "${COMPREPLY[*]}"`
		out, err := exec.Command("bash", "-c", sh).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%q completes to %q (%v), want %q", tc.words, out, err, tc.want)
		}
	}
	// Every flag --help shows is completed.
	for _, f := range parseFlagDocs(helpOf("run")) {
		if !strings.Contains(script, "--"+f.name+" ") && !strings.Contains(script, "--"+f.name+`"`) {
			t.Errorf("the bash completion lacks kiln run --%s", f.name)
		}
	}
	for _, sh := range []string{"zsh", "fish"} {
		if code, out, _ := runCLI(context.Background(), t, nil, "completion", sh); code != 0 || !strings.Contains(out, "time-limit") {
			t.Errorf("kiln completion %s: exit %d\n%s", sh, code, out)
		}
	}
	if code, _, _ := runCLI(context.Background(), t, nil, "completion", "tcsh"); code != exitUsage {
		t.Errorf("kiln completion tcsh: exit %d, want %d", code, exitUsage)
	}
}

// TestManPage generates kiln(1) and, where groff is installed, formats it
// with every warning on.
func TestManPage(t *testing.T) {
	code, page, errs := runCLI(context.Background(), t, nil, "man")
	if code != 0 {
		t.Fatalf("kiln man: exit %d, %s", code, errs)
	}
	for _, want := range []string{".TH KILN 1", `.SH "KILN RUN"`, `.SH "KILN CERTS ISSUE"`, `\fB\-\-time\-limit\fR`, `\fB\-\-max\-time\fR`, "Exit codes:"} {
		if !strings.Contains(page, want) {
			t.Errorf("the manual page lacks %q", want)
		}
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff not installed: the page is not formatted")
		return
	}
	f := filepath.Join(t.TempDir(), "kiln.1")
	writeFile(t, filepath.Dir(f), "kiln.1", page)
	out, err := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", f).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
}
