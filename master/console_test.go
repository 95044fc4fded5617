package master_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/master"
)

// TestConsoleScript feeds the console a whole script, as a pipe on stdin
// would, and checks what it printed.
func TestConsoleScript(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("s1", 2, false, "python")
	in := "/help\n/help kick\n/server list -o wide\n/client list\n/job show J9\nserver list\n/frobnicate\n/quit\n/server list\n"
	out := &syncBuffer{}
	con := master.NewConsole(c.srv, struct {
		io.Reader
		io.Writer
	}{strings.NewReader(in), out}, "console")
	if err := con.Run(context.Background()); !errors.Is(err, master.ErrQuit) {
		t.Fatalf("Run: %v, want ErrQuit", err)
	}
	text := out.String()
	wantAll(t, "console", text,
		"Type /help", master.ConsolePrompt,
		"/server list", "/keys retire ROLE VERSION", "/quit", // /help lists the commands with their slash
		"/kick NAME\r\n  kick NAME disconnects",                        // /help kick explains one
		"NAME", "LANGUAGES", "s1", "python (python 1.0)", "1 slave(s)", // /server list
		"0 client(s)",
		"error: no job J9",
		"commands start with a slash",
		"error: unknown command \"frobnicate\"",
		"stopping the master")
	if strings.Count(text, "1 slave(s)") != 1 {
		t.Errorf("commands after /quit ran:\n%s", text)
	}
	// Columns line up: every row of /server list starts its ADDRESS column
	// where the header does.
	lines := strings.Split(text, "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "NAME") && strings.Contains(l, "LANGUAGES") {
			col := strings.Index(l, "ADDRESS")
			if row := lines[i+1]; len(row) < col || row[col-2:col] != "  " || row[col] == ' ' {
				t.Errorf("misaligned table:\n%s\n%s", l, row)
			}
		}
	}
}

// TestConsoleInteractive drives the console through a pipe one line at a
// time, with log lines arriving while the operator types.
func TestConsoleInteractive(t *testing.T) {
	c := newCluster(t)
	inR, inW := io.Pipe()
	out := &syncBuffer{}
	con := master.NewConsole(c.srv, struct {
		io.Reader
		io.Writer
	}{inR, out}, "console")
	done := make(chan error, 1)
	go func() { done <- con.Run(context.Background()) }()
	waitOutput := func(s string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), s) {
			if time.Now().After(deadline) {
				t.Fatalf("console never printed %q; got:\n%s", s, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	io.WriteString(inW, "/client li") // half a line typed...
	waitOutput("/client li")
	con.Write([]byte("level=INFO msg=\"peer connected\" peer=bob\n")) // ...when a log line arrives
	waitOutput("peer=bob\r\n" + master.ConsolePrompt + "/client li")  // printed above, prompt and typing redrawn
	io.WriteString(inW, "st\r")
	waitOutput("0 client(s)")
	io.WriteString(inW, "/kick nobody\r")
	waitOutput("error: no connected peer called nobody")
	inW.Close() // end of input (Ctrl-D on a terminal)
	select {
	case err := <-done:
		if !errors.Is(err, io.EOF) {
			t.Fatalf("Run: %v, want io.EOF", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("console did not stop at the end of its input")
	}
}

// TestConsoleTabAndQuit: Tab completes command words; /quit with a job
// running asks first, and a second /quit (or /quit --yes) stops.
func TestConsoleTabAndQuit(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("s1", 2, true, "python") // holds its jobs: one stays running
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, e := submit(t, cs, 1, "hang.py", []byte("print(1)\n")); e != nil {
		t.Fatalf("submit: %+v", e)
	}
	in := "/ser\t\r/keys r\t\r/job list\r/quit\r/quit\r/server list\r"
	out := &syncBuffer{}
	con := master.NewConsole(c.srv, struct {
		io.Reader
		io.Writer
	}{strings.NewReader(in), out}, "console")
	if err := con.Run(context.Background()); !errors.Is(err, master.ErrQuit) {
		t.Fatalf("Run: %v, want ErrQuit", err)
	}
	text := out.String()
	wantAll(t, "console", text,
		"/server list \r\n", "1 slave(s)", // /ser<Tab> completed to the one command
		"/keys re\r\n", "error: unknown command \"keys re\"", // keys r<Tab>: revoke, retire: their common prefix
		"1 job(s) are queued or running", "Type /quit again", // the first /quit asks
		"alice", "stopping the master")
	if strings.Count(text, "1 slave(s)") != 1 {
		t.Errorf("commands after the second /quit ran:\n%s", text)
	}
}
