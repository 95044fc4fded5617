package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"kiln/auth"
	"kiln/certs"
	"kiln/client"
	"kiln/master"
	"kiln/transport/wire"
)

const adminHelp = `Usage: kiln admin [--bundle ADMIN_BUNDLE] [--master HOST:PORT] [--json] [-o wide] [--yes] COMMAND...

Runs one operator command on the master, over the client port, with an admin
key (a client key is refused with 'forbidden', a slave key at the port). The
master's console (/help on its terminal) has the same commands.

Commands:
%s
Exit codes: 0 done; 1 the command failed (unknown name, bad arguments, or a
destructive one that needs --yes); 2 usage; 110 the key was refused or is
not an admin key; 111 master unreachable. With --json, errors are printed
on stdout as {"error": {"code": ..., "message": ..., "exit_code": ...}}.

Flags:
`

// commandList renders the admin commands for help texts.
func commandList() string {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, c := range master.Commands() {
		if !c.Console {
			fmt.Fprintf(tw, "  %s\t%s\n", c.Usage(), c.Summary)
		}
	}
	tw.Flush()
	return b.String()
}

func cmdAdmin(ctx context.Context, e env, args []string) int {
	if v := e.getenv("KILN_JSON"); v == "true" || v == "1" {
		return adminJSON(ctx, e, args)
	}
	for i, a := range args {
		if a == "--" {
			break
		}
		if a == "--json" || a == "-json" || a == "-o=json" || a == "--json=true" || (a == "-o" || a == "--o") && i+1 < len(args) && args[i+1] == "json" {
			return adminJSON(ctx, e, args)
		}
	}
	code, _ := runAdmin(ctx, e, args)
	return code
}

// adminJSON runs an admin command for a script: the answer, or the error,
// as one JSON document on stdout.
func adminJSON(ctx context.Context, e env, args []string) int {
	var errb bytes.Buffer
	stderr := e.stderr
	e.stderr = &errb
	code, wireCode := runAdmin(ctx, e, args)
	if code == 0 || errb.Len() == 0 {
		stderr.Write(errb.Bytes())
		return code
	}
	msg := strings.TrimSpace(errb.String())
	if first, _, ok := strings.Cut(msg, "\n"); ok && code != 0 {
		msg = first // the usage text after a flag error stays out
		stderr.Write(errb.Bytes())
	}
	type jsonError struct {
		Code     string `json:"code"`
		Message  string `json:"message"`
		ExitCode int    `json:"exit_code"`
	}
	js, _ := json.MarshalIndent(map[string]jsonError{"error": {Code: wireCode,
		Message: strings.TrimPrefix(msg, "kiln admin: "), ExitCode: code}}, "", "  ")
	fmt.Fprintln(e.stdout, string(js))
	return code
}

// runAdmin is kiln admin; it returns the exit code and, when the master
// answered with an error, its wire code.
func runAdmin(ctx context.Context, e env, args []string) (int, string) {
	fs := flag.NewFlagSet("kiln admin", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the answer (or the error) as JSON (for scripts)")
	output := fs.String("o", "", "output `FORMAT`: wide (listings with every column) or json")
	yes := fs.Bool("yes", false, "confirm a command that asks for it (revoking or retiring your own key, retiring a version no key has)")
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), adminHelp, commandList())
		fs.PrintDefaults()
	}
	cmdArgs, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, ""
		}
		return exitUsage, ""
	}
	if err := applyEnv(fs, e); err != nil {
		fmt.Fprintf(e.stderr, "kiln admin: %v\n", err)
		return exitUsage, ""
	}
	switch *output {
	case "":
	case "wide":
		cmdArgs = append(cmdArgs, "-o", "wide")
	case "json":
		*asJSON = true
	default:
		fmt.Fprintf(e.stderr, "kiln admin: -o %q: want wide or json\n", *output)
		return exitUsage, ""
	}
	if *yes {
		cmdArgs = append(cmdArgs, "--yes")
	}
	if len(cmdArgs) == 0 {
		fmt.Fprintln(e.stderr, "kiln admin: no command (try 'kiln admin help')")
		return exitUsage, ""
	}
	if err := cf.resolve(e); err != nil {
		fmt.Fprintf(e.stderr, "kiln admin: %v\n", err)
		return exitUsage, ""
	}
	if code := checkAdminBundle(e, cf.bundle); code != 0 {
		return code, ""
	}
	c, code := cf.dial(ctx, e, "admin")
	if c == nil {
		return code, ""
	}
	defer c.Close()
	rep, err := c.Admin(ctx, cmdArgs)
	if err != nil {
		var re *client.RequestError
		if errors.As(err, &re) && (re.Code == wire.CodeNotFound || re.Code == wire.CodeBadRequest) {
			fmt.Fprintf(e.stderr, "kiln admin: %s\n", re.Message)
			return 1, re.Code
		}
		if ctx.Err() != nil {
			return interruptedCode(ctx, e, "admin"), ""
		}
		code := reportErr(e, "admin", err)
		if errors.As(err, &re) {
			return code, re.Code
		}
		return code, ""
	}
	if *asJSON {
		var b bytes.Buffer
		if err := json.Indent(&b, rep.JSON, "", "  "); err != nil {
			fmt.Fprintf(e.stderr, "kiln admin: the master sent invalid JSON: %v\n", err)
			return 1, ""
		}
		fmt.Fprintln(e.stdout, b.String())
		return 0, ""
	}
	fmt.Fprint(e.stdout, rep.Text)
	if rep.Text != "" && !strings.HasSuffix(rep.Text, "\n") {
		fmt.Fprintln(e.stdout)
	}
	return 0, ""
}

// checkAdminBundle refuses a slave bundle before dialing, with a clear
// message (the client library cannot speak for a slave key, and the master
// would refuse it at the port with role_mismatch).
func checkAdminBundle(e env, path string) int {
	b, err := certs.ReadBundle(path)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln admin: %v\n", err)
		return exitUsage
	}
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln admin: %v\n", err)
		return exitUsage
	}
	if id.Role != wire.RoleAdmin && id.Role != wire.RoleClient {
		fmt.Fprintf(e.stderr, "kiln admin: %s is a %s key; admin commands need an admin key (role_mismatch)\n", id.Name, id.Role)
		return exitRefused
	}
	return 0
}
