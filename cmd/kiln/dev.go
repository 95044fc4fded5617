package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"kiln/auth"
	"kiln/certs"
	"kiln/master"
)

const devHelp = `Usage: kiln dev [flags]

Starts a throwaway cluster for development: a fresh CA and bundles in a
temporary directory (or --dir), and a master with an embedded slave. It
prints the exact 'kiln run' command to use. Ctrl-C, /quit, SIGTERM or
closing the terminal (SIGHUP) stops it and removes the temporary directory
with its CA key (a --dir is kept).

Flags:
`

func cmdDev(ctx context.Context, e env, args []string) int {
	fs := flag.NewFlagSet("kiln dev", flag.ContinueOnError)
	var f masterFlags
	f.register(fs)
	fs.Lookup("local-slots").DefValue = fmt.Sprint(runtime.NumCPU())
	f.localSlots = runtime.NumCPU()
	fs.Lookup("dir").Usage = "keep the cluster in `DIR` (default: a temporary directory, removed on exit)"
	if code, done := parseFlags(fs, e, args, devHelp); done {
		return code
	}
	if f.localSlots <= 0 {
		fmt.Fprintln(e.stderr, "kiln dev: --local-slots must be at least 1")
		return exitUsage
	}
	if f.dir == "" {
		dir, err := os.MkdirTemp("", "kiln-dev-")
		if err != nil {
			fmt.Fprintf(e.stderr, "kiln dev: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		f.dir = dir
	}
	if err := devCluster(f.dir); err != nil {
		fmt.Fprintf(e.stderr, "kiln dev: %v\n", err)
		return 1
	}
	// The console puts the terminal in raw mode: log lines must go through
	// it, as for `kiln master`, or each would start where the last ended.
	e.stderr = &logSwitch{w: e.stderr}
	log, err := newLogger(e.stderr, f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln dev: %v\n", err)
		return exitUsage
	}
	ready := func(srv *master.Server) {
		cb := filepath.Join(f.dir, "client.bundle")
		fmt.Fprintf(e.stdout, `kiln dev: a throwaway cluster in %s
  master    %s (clients)  %s (slaves), %d local slots
  bundles   %s (client)  %s (admin)

Run a program:
  export KILN_BUNDLE=%s KILN_MASTER=%s
  kiln run examples/hello.c

Ctrl-C stops the cluster.
`, f.dir, srv.ClientAddr(), srv.SlaveAddr(), f.localSlots, cb, filepath.Join(f.dir, "admin.bundle"), cb, srv.ClientAddr())
	}
	if err := runMaster(ctx, e, f, log, ready); err != nil {
		fmt.Fprintf(e.stderr, "kiln dev: %v\n", err)
		return 1
	}
	return 0
}

// devCluster makes a CA, a master bundle for loopback, a client and an admin
// bundle and the registry in dir, unless dir already holds a cluster.
func devCluster(dir string) error {
	paths := certs.Paths(dir)
	if _, err := os.Stat(paths.MasterBundle); err == nil {
		return nil
	}
	ca, err := certs.NewCA("kiln dev CA")
	if err != nil {
		return err
	}
	if err := ca.Save(dir); err != nil {
		return err
	}
	mb, err := ca.Issue(certs.IssueRequest{Role: certs.RoleMaster, Name: "master", Version: version,
		Hosts: []string{"localhost", "127.0.0.1", "::1"}})
	if err != nil {
		return err
	}
	if err := certs.WriteBundle(paths.MasterBundle, mb); err != nil {
		return err
	}
	reg, err := auth.CreateRegistry(paths.Registry)
	if err != nil {
		return err
	}
	for _, n := range []struct{ role, name, file string }{
		{certs.RoleClient, "dev-client", "client.bundle"},
		{certs.RoleAdmin, "dev-admin", "admin.bundle"},
	} {
		b, err := ca.Issue(certs.IssueRequest{Role: n.role, Name: n.name, Version: version})
		if err != nil {
			return err
		}
		if err := recordBundle(reg, b); err != nil {
			return err
		}
		if err := certs.WriteBundle(filepath.Join(dir, n.file), b); err != nil {
			return err
		}
	}
	return nil
}
