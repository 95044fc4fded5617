package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/term"
)

// ConsolePrompt is the prompt of the operator console.
const ConsolePrompt = "kiln> "

// ErrQuit is returned by [Console.Run] when the operator typed /quit.
var ErrQuit = errors.New("console: quit")

// Console is the operator console on the master's own terminal: it reads
// commands such as /server list (the admin commands with a leading slash)
// with line editing and history, and prints their aligned tables.
//
// It works over any io.ReadWriter: a terminal in raw mode, or a pipe in
// tests (line editing then sees the bytes a terminal would send). Log lines
// written through [Console.Write] are printed above the prompt, which is
// redrawn, so that they do not tear the line being typed apart.
//
// Write is safe for concurrent use with Run; Run must be called once.
type Console struct {
	srv  *Server
	by   string
	term *term.Terminal
	mu   sync.Mutex // serialises writes to term from Run and from loggers

	quitAsked bool // the last line was a /quit that asked for confirmation (Run's goroutine only)
}

// NewConsole returns a console for srv over rw. Commands run as the admin
// called by (for example "console"), which is how they appear in the logs.
func NewConsole(srv *Server, rw io.ReadWriter, by string) *Console {
	c := &Console{srv: srv, by: by, term: term.NewTerminal(rw, ConsolePrompt)}
	c.term.AutoCompleteCallback = complete
	return c
}

// complete is the console's Tab completion: the command words typed so far
// are completed to the one command (or the longest prefix common to the
// commands) they can still be.
func complete(line string, pos int, key rune) (string, int, bool) {
	if key != '\t' || pos != len(line) || !strings.HasPrefix(line, "/") {
		return "", 0, false
	}
	typed := strings.TrimPrefix(line, "/")
	var names []string
	for _, c := range Commands() {
		if strings.HasPrefix(c.Name, typed) {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return "", 0, false
	}
	common := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, common) {
			common = common[:len(common)-1]
		}
	}
	if len(names) == 1 {
		common += " "
	}
	if len(common) <= len(typed) {
		return "", 0, false
	}
	out := "/" + common
	return out, len(out), true
}

// SetSize tells the console the terminal's width and height. Sizes a
// terminal does not know (zero) keep the default of 80x24.
func (c *Console) SetSize(width, height int) error {
	if width <= 0 || height <= 0 {
		return nil
	}
	return c.term.SetSize(width, height)
}

// Write prints p (log lines, say) above the prompt and redraws it.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.term.Write(p)
}

// Run reads and runs commands until the input ends (io.EOF; on a terminal
// Ctrl-D or Ctrl-C), the operator types /quit (ErrQuit), or ctx is
// cancelled (its error, checked after each line). A blocked read is not
// interrupted by ctx: close the input to stop Run at once.
func (c *Console) Run(ctx context.Context) error {
	c.printf("Kiln master console. Type /help for the commands, /quit to stop the master.\n")
	for {
		line, err := c.term.ReadLine()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := c.Exec(ctx, line); err != nil {
			return err
		}
	}
}

// Exec runs one console line and prints its answer. It returns ErrQuit for
// /quit and nil otherwise (command errors are printed, not returned).
func (c *Console) Exec(ctx context.Context, line string) error {
	line = strings.TrimSpace(line)
	if line == "" {
		return nil
	}
	if !strings.HasPrefix(line, "/") {
		c.printf("commands start with a slash, e.g. /server list; /help lists them\n")
		return nil
	}
	args := strings.Fields(strings.TrimPrefix(line, "/"))
	if len(args) == 0 {
		c.printf("/help lists the commands\n")
		return nil
	}
	asked := c.quitAsked
	c.quitAsked = false
	if args[0] == "quit" && (len(args) == 1 || len(args) == 2 && (args[1] == "--yes" || args[1] == "-y")) {
		if n := c.srv.liveJobs(); n > 0 && len(args) == 1 && !asked {
			c.quitAsked = true
			c.printf("%d job(s) are queued or running; stopping the master ends them (their clients are told it is\n"+
				"shutting down). Type /quit again to stop anyway.\n", n)
			return nil
		}
		c.printf("stopping the master\n")
		return ErrQuit
	}
	if args[0] == "help" {
		// The console shows commands as typed here, with their slash.
		rep, err := c.srv.Admin(ctx, c.by, args)
		if err != nil {
			c.printf("error: %v\n", err)
			return nil
		}
		c.printf("%s", slashed(rep.Text, len(args) == 1))
		return nil
	}
	rep, err := c.srv.Admin(ctx, c.by, args)
	if err != nil {
		c.printf("error: %v\n", err)
		return nil
	}
	c.printf("%s", rep.Text)
	return nil
}

// slashed prefixes the command names of help's output with a slash: in the
// list (every line but the header) or in one command's explanation (lines
// that do not start with a space).
func slashed(text string, list bool) string {
	lines := strings.SplitAfter(text, "\n")
	for i, l := range lines {
		switch {
		case l == "" || l == "\n":
		case list && i > 0:
			lines[i] = "/" + l
		case list:
			lines[i] = " " + l
		case !strings.HasPrefix(l, " "):
			lines[i] = "/" + l
		}
	}
	return strings.Join(lines, "")
}

func (c *Console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.term, format, args...)
}
