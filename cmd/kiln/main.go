// Command kiln is the single binary of the Kiln cluster: cert tool, master,
// slave, command-line and terminal clients, admin console and benchmarks.
// This package parses flags and wires packages together; it holds no logic
// of its own.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

// version is the software version of this build, set with -ldflags.
var version = "0.1.0"

// env is what a subcommand may touch of the outside world, so that tests can
// run the CLI in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

const usage = `kiln - a secure cluster that compiles and runs programs

Usage:
  kiln certs init|issue|revoke|list ...   manage the cluster CA, bundles and key registry
  kiln master --dir D ...                 run the master
  kiln slave --bundle FILE --master H:P   run a slave
  kiln run --bundle FILE --master H:P F   run one program and print its output
  kiln submit F / result JOB / jobs       run a program without waiting; its result later
  kiln client [--bundle FILE] [F]         the terminal UI
  kiln admin --bundle FILE COMMAND        operate the cluster remotely
  kiln dev                                master + local slots + throwaway certs
  kiln bench --jobs N --concurrency C F   measure throughput and latency
  kiln loadtest [--slaves N ...]          measure the master against simulated peers
  kiln version                            print the version
  kiln completion bash|zsh|fish           shell completion; kiln man: the manual page

Run 'kiln COMMAND --help' for the flags of one command.
Environment: KILN_BUNDLE and KILN_MASTER stand for --bundle and --master; for
run, admin and client every flag has one, KILN_ and its name in capitals
(KILN_TIME_LIMIT=10s for --time-limit); flags win. Master and slave read a
configuration file: --config FILE.
`

func main() {
	if sandboxChild() {
		return
	}
	// SIGHUP (the terminal closed) stops a command as cleanly as Ctrl-C, so
	// that `kiln dev` removes its throwaway directory and CA key.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	e := env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	stopProfile := startProfile(os.Getenv("KILN_CPUPROFILE"), e)
	code := run(ctx, e, os.Args[1:])
	stopProfile()
	os.Exit(code)
}

// startProfile writes a CPU profile of the whole process to path (the
// KILN_CPUPROFILE environment variable, for performance work) until the
// returned func is called.
func startProfile(path string, e env) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln: KILN_CPUPROFILE: %v\n", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// run dispatches to a subcommand and returns the process exit code.
func run(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "certs":
		return cmdCerts(ctx, e, rest)
	case "master":
		return cmdMaster(ctx, e, rest)
	case "slave":
		return cmdSlave(ctx, e, rest)
	case "run":
		return cmdRun(ctx, e, rest)
	case "submit":
		return cmdSubmit(ctx, e, rest)
	case "result":
		return cmdResult(ctx, e, rest)
	case "jobs":
		return cmdJobs(ctx, e, rest)
	case "client":
		return cmdClient(ctx, e, rest)
	case "admin":
		return cmdAdmin(ctx, e, rest)
	case "dev":
		return cmdDev(ctx, e, rest)
	case "bench":
		return cmdBench(ctx, e, rest)
	case "loadtest":
		return cmdLoadtest(ctx, e, rest)
	case "completion":
		return cmdCompletion(ctx, e, rest)
	case "man":
		return cmdMan(ctx, e, rest)
	case "version", "--version":
		fmt.Fprintf(e.stdout, "kiln %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return 0
	}
	fmt.Fprintf(e.stderr, "kiln: unknown command %q\n\n%s", cmd, usage)
	return 2
}
