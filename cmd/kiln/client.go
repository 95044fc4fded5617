package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"kiln/client/tui"
)

const clientHelp = `Usage: kiln client [--bundle FILE] [--master HOST:PORT] [FILE]

The terminal UI: fill in the master's address and port and the bundle (or
pass them with the flags, KILN_MASTER and KILN_BUNDLE), press F2 to connect,
F3 to select a source file (FILE preselects one), F5 to run it, F6 to edit
it, F7 for what the cluster can run, Esc to cancel a running job, F10 to
quit. See docs/client.md.

Flags:
`

func cmdClient(ctx context.Context, e env, args []string) int {
	fs := flag.NewFlagSet("kiln client", flag.ContinueOnError)
	var f clientFlags
	f.register(fs)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), clientHelp)
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return exitUsage
	}
	if err := applyEnv(fs, e); err != nil {
		fmt.Fprintf(e.stderr, "kiln client: %v\n", err)
		return exitUsage
	}
	if len(files) > 1 {
		fmt.Fprintln(e.stderr, "kiln client: at most one FILE")
		return exitUsage
	}
	if f.bundle == "" {
		f.bundle = e.getenv("KILN_BUNDLE")
	}
	if f.master == "" {
		f.master = e.getenv("KILN_MASTER")
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) || !term.IsTerminal(int(os.Stdout.Fd())) {
		fmt.Fprintln(e.stderr, "kiln client: needs a terminal (use 'kiln run' in scripts)")
		return exitUsage
	}
	opts := tui.Options{Model: tui.Config{Target: tui.Target{Master: f.master, Bundle: f.bundle}, Version: ""}}
	if len(files) == 1 {
		opts.Model.File = files[0]
	}
	// SIGHUP (the terminal closed) quits like SIGTERM and Ctrl-C; the
	// error of a terminal that went away is then no news.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	if err := tui.New(opts).Run(ctx); err != nil && ctx.Err() == nil {
		fmt.Fprintf(e.stderr, "kiln client: %v\n", err)
		return 1
	}
	return 0
}
