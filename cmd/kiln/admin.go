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

const adminHelp = `Usage: kiln admin [--bundle ADMIN_BUNDLE] [--master HOST:PORT] [--json] COMMAND...

Runs one operator command on the master, over the client port, with an admin
key (a client key is refused with 'forbidden', a slave key at the port). The
master's console (/help on its terminal) has the same commands.

Commands:
%s
Exit codes: 0 done; 1 the command failed (unknown name, bad arguments);
2 usage; 110 the key was refused or is not an admin key; 111 master unreachable.

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
	fs := flag.NewFlagSet("kiln admin", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the answer as JSON (for scripts)")
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), adminHelp, commandList())
		fs.PrintDefaults()
	}
	cmdArgs, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if len(cmdArgs) == 0 {
		fmt.Fprintln(e.stderr, "kiln admin: no command (try 'kiln admin help')")
		return exitUsage
	}
	if err := cf.resolve(e); err != nil {
		fmt.Fprintf(e.stderr, "kiln admin: %v\n", err)
		return exitUsage
	}
	if code := checkAdminBundle(e, cf.bundle); code != 0 {
		return code
	}
	c, code := cf.dial(ctx, e, "admin")
	if c == nil {
		return code
	}
	defer c.Close()
	rep, err := c.Admin(ctx, cmdArgs)
	if err != nil {
		var re *client.RequestError
		if errors.As(err, &re) && (re.Code == wire.CodeNotFound || re.Code == wire.CodeBadRequest) {
			fmt.Fprintf(e.stderr, "kiln admin: %s\n", re.Message)
			return 1
		}
		if ctx.Err() != nil {
			return interruptedCode(ctx, e, "admin")
		}
		return reportErr(e, "admin", err)
	}
	if *asJSON {
		var b bytes.Buffer
		if err := json.Indent(&b, rep.JSON, "", "  "); err != nil {
			fmt.Fprintf(e.stderr, "kiln admin: the master sent invalid JSON: %v\n", err)
			return 1
		}
		fmt.Fprintln(e.stdout, b.String())
		return 0
	}
	fmt.Fprint(e.stdout, rep.Text)
	if rep.Text != "" && !strings.HasSuffix(rep.Text, "\n") {
		fmt.Fprintln(e.stdout)
	}
	return 0
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
