package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"kiln/auth"
	"kiln/certs"
)

const certsUsage = `Usage: kiln certs COMMAND [flags]

Manage the cluster CA, onboarding bundles and the key registry.

Commands:
  init     create the cluster CA, the master bundle and an empty registry
  issue    issue an onboarding bundle for a slave, client or admin
  revoke   revoke a key by name or fingerprint, or retire a whole version
  list     list issued keys and retired versions

Run 'kiln certs COMMAND --help' for the flags of one command.
`

// cmdCerts runs `kiln certs ...`.
func cmdCerts(ctx context.Context, e env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, certsUsage)
		return 2
	}
	switch args[0] {
	case "init":
		return certsInit(e, args[1:])
	case "issue":
		return certsIssue(e, args[1:])
	case "revoke":
		return certsRevoke(e, args[1:])
	case "list":
		return certsList(e, args[1:])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, certsUsage)
		return 0
	}
	fmt.Fprintf(e.stderr, "kiln certs: unknown command %q\n\n%s", args[0], certsUsage)
	return 2
}

// certsFlags makes the flag set of one certs subcommand.
func certsFlags(e env, name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet("kiln certs "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: kiln certs %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parseCertsFlags parses flags placed before, between or after positional
// arguments and returns the positionals. ok is false when the command must
// exit with code (0 after --help, 2 after a usage error).
func parseCertsFlags(fs *flag.FlagSet, args []string) (pos []string, code int, ok bool) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0, false
			}
			return nil, 2, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), 0, true
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// usageErr reports a usage error and returns exit code 2.
func usageErr(e env, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "%s: %s (see --help)\n", fs.Name(), fmt.Sprintf(format, args...))
	return 2
}

// failed reports an error on one line and returns exit code 1.
func failed(e env, fs *flag.FlagSet, err error) int {
	fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
	return 1
}

// hostList is a repeatable flag that also accepts comma-separated lists.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*h = append(*h, s)
		}
	}
	return nil
}

func certsInit(e env, args []string) int {
	fs := certsFlags(e, "init", "--dir D [--master-host H ...] [--force]",
		"Create a cluster directory: the CA (ca.crt, ca.key), the master's bundle\n(master.bundle) and an empty key registry (registry.json).")
	dir := fs.String("dir", "", "cluster directory to create (required)")
	var hosts hostList
	fs.Var(&hosts, "master-host", "DNS name or IP the master is reached at; repeat or comma-separate (default localhost,127.0.0.1,::1)")
	force := fs.Bool("force", false, "replace an existing CA; every bundle issued before stops working")
	caName := fs.String("ca-name", "Kiln cluster CA", "common name of the CA certificate")
	valid := fs.Duration("valid", certs.NodeValidity, "lifetime of the master certificate")
	pos, code, ok := parseCertsFlags(fs, args)
	switch {
	case !ok:
		return code
	case len(pos) > 0:
		return usageErr(e, fs, "unexpected argument %q", pos[0])
	case *dir == "":
		return usageErr(e, fs, "--dir is required")
	}
	if len(hosts) == 0 {
		hosts = hostList{"localhost", "127.0.0.1", "::1"}
	}
	p := certs.Paths(*dir)
	if !*force {
		for _, f := range []string{p.CACert, p.CAKey} {
			if _, err := os.Stat(f); err == nil {
				return failed(e, fs, fmt.Errorf("%s already exists; use --force to replace the CA (every issued bundle stops working)", f))
			}
		}
	}
	ca, err := certs.NewCA(*caName)
	if err != nil {
		return failed(e, fs, err)
	}
	master, err := ca.Issue(certs.IssueRequest{Role: certs.RoleMaster, Name: "master", Version: version, Hosts: hosts, Validity: *valid})
	if err != nil {
		return failed(e, fs, err)
	}
	if err := ca.Save(*dir); err != nil {
		return failed(e, fs, err)
	}
	if err := certs.WriteBundle(p.MasterBundle, master); err != nil {
		return failed(e, fs, err)
	}
	if err := os.Remove(p.Registry); err != nil && !errors.Is(err, os.ErrNotExist) {
		return failed(e, fs, err)
	}
	if _, err := auth.CreateRegistry(p.Registry); err != nil {
		return failed(e, fs, err)
	}
	fmt.Fprintf(e.stdout, "created cluster CA %q in %s\n", *caName, *dir)
	fmt.Fprintf(e.stdout, "  %-14s %s (keep it offline when you can)\n", certs.CAKeyFile, p.CAKey)
	fmt.Fprintf(e.stdout, "  %-14s %s for %s\n", certs.MasterBundleFile, p.MasterBundle, strings.Join(hosts, ", "))
	fmt.Fprintf(e.stdout, "  %-14s %s\n", certs.RegistryFile, p.Registry)
	return 0
}

func certsIssue(e env, args []string) int {
	fs := certsFlags(e, "issue", "--dir D --role slave|client|admin --name N [--version V] [--valid DURATION] --out FILE",
		"Issue an onboarding bundle (CA certificate, node certificate and key in one\n0600 file) and record its key in D/registry.json. Prints the key fingerprint.")
	dir := fs.String("dir", "", "cluster directory made by 'kiln certs init' (required)")
	role := fs.String("role", "", "role of the key: slave, client or admin (required)")
	name := fs.String("name", "", "unique node name, e.g. slave-1 (required)")
	ver := fs.String("version", version, "software version the node runs; the master refuses a Hello with another version")
	valid := fs.Duration("valid", certs.NodeValidity, "lifetime of the certificate")
	out := fs.String("out", "", "bundle file to write, mode 0600 (required)")
	force := fs.Bool("force", false, "overwrite --out if it exists")
	pos, code, ok := parseCertsFlags(fs, args)
	switch {
	case !ok:
		return code
	case len(pos) > 0:
		return usageErr(e, fs, "unexpected argument %q", pos[0])
	case *dir == "" || *role == "" || *name == "" || *out == "":
		return usageErr(e, fs, "--dir, --role, --name and --out are required")
	case *role != certs.RoleSlave && *role != certs.RoleClient && *role != certs.RoleAdmin:
		return usageErr(e, fs, "--role must be slave, client or admin, not %q", *role)
	case *valid <= 0:
		return usageErr(e, fs, "--valid must be positive")
	}
	if err := certs.CheckName(*name); err != nil {
		return usageErr(e, fs, "%v", err)
	}
	if err := certs.CheckVersion(*ver); err != nil {
		return usageErr(e, fs, "%v", err)
	}
	if _, err := os.Stat(*out); err == nil && !*force {
		return failed(e, fs, fmt.Errorf("%s already exists; use --force to overwrite it", *out))
	}
	b, err := issueRecorded(*dir, certs.IssueRequest{Role: *role, Name: *name, Version: *ver, Validity: *valid}, *out)
	if err != nil {
		return failed(e, fs, err)
	}
	fmt.Fprintf(e.stderr, "issued %s key %s (version %s, expires %s) into %s\n",
		*role, *name, *ver, b.Cert.NotAfter.Format(time.DateOnly), *out)
	fmt.Fprintln(e.stdout, b.Fingerprint())
	return 0
}

// issueRecorded mints a bundle, records it in the registry, then writes it.
// If the bundle cannot be written, the new key is revoked again.
func issueRecorded(dir string, req certs.IssueRequest, out string) (*certs.Bundle, error) {
	p := certs.Paths(dir)
	ca, err := certs.LoadCA(dir)
	if err != nil {
		return nil, err
	}
	reg, err := auth.OpenRegistry(p.Registry)
	if err != nil {
		return nil, err
	}
	b, err := ca.Issue(req)
	if err != nil {
		return nil, err
	}
	entry := auth.Entry{Fingerprint: b.Fingerprint(), Role: req.Role, Name: req.Name, Version: req.Version,
		Issued: time.Now().UTC().Truncate(time.Second), Expires: b.Cert.NotAfter.UTC()}
	if err := reg.Add(entry); err != nil {
		return nil, err
	}
	if err := certs.WriteBundle(out, b); err != nil {
		if _, rerr := reg.RevokeFingerprint(entry.Fingerprint, "bundle could not be written"); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	return b, nil
}

func certsRevoke(e env, args []string) int {
	fs := certsFlags(e, "revoke", "--dir D (NAME | --fingerprint F | --role R --version V) [--reason TEXT]",
		"Revoke the active key named NAME, or the key with fingerprint F (a unique\nprefix of at least 8 hex digits will do), or retire every key of role R and\nversion V, including keys issued for it later. A running master disconnects\nthe peers concerned within a second.")
	dir := fs.String("dir", "", "cluster directory made by 'kiln certs init' (required)")
	fp := fs.String("fingerprint", "", "fingerprint (or unique prefix) of the key to revoke")
	role := fs.String("role", "", "with --version: the role whose version is retired")
	ver := fs.String("version", "", "with --role: the software version to retire")
	reason := fs.String("reason", "", "why, recorded in the registry")
	pos, code, ok := parseCertsFlags(fs, args)
	if !ok {
		return code
	}
	forms := 0
	for _, set := range []bool{len(pos) > 0, *fp != "", *role != "" || *ver != ""} {
		if set {
			forms++
		}
	}
	switch {
	case *dir == "":
		return usageErr(e, fs, "--dir is required")
	case len(pos) > 1:
		return usageErr(e, fs, "give one NAME, not %d", len(pos))
	case forms != 1:
		return usageErr(e, fs, "give exactly one of NAME, --fingerprint, or --role with --version")
	case (*role == "") != (*ver == ""):
		return usageErr(e, fs, "--role and --version go together")
	}
	reg, err := auth.OpenRegistry(certs.Paths(*dir).Registry)
	if err != nil {
		return failed(e, fs, err)
	}
	var affected []auth.Entry
	switch {
	case len(pos) == 1:
		affected, err = reg.RevokeName(pos[0], *reason)
	case *fp != "":
		var full string
		if full, err = resolveFingerprint(reg, *fp); err == nil {
			affected, err = reg.RevokeFingerprint(full, *reason)
		}
	default:
		affected, err = reg.Retire(*role, *ver, *reason)
		if err == nil {
			fmt.Fprintf(e.stdout, "retired version %s of %s keys (%d active key(s) affected)\n", *ver, *role, len(affected))
		}
	}
	if err != nil {
		return failed(e, fs, err)
	}
	for _, en := range affected {
		fmt.Fprintf(e.stdout, "%s %s key %s (version %s, fingerprint %s)\n", en.Status, en.Role, en.Name, en.Version, en.Fingerprint)
	}
	return 0
}

// resolveFingerprint expands a unique fingerprint prefix.
func resolveFingerprint(reg *auth.Registry, prefix string) (string, error) {
	prefix = strings.ToLower(prefix)
	if len(prefix) < 8 {
		return "", errors.New("--fingerprint needs at least 8 hex digits")
	}
	var match []string
	for _, en := range reg.Entries() {
		if strings.HasPrefix(en.Fingerprint, prefix) {
			match = append(match, en.Fingerprint)
		}
	}
	switch len(match) {
	case 0:
		return "", fmt.Errorf("no key with fingerprint %s", prefix)
	case 1:
		return match[0], nil
	}
	return "", fmt.Errorf("fingerprint prefix %s matches %d keys; give more digits", prefix, len(match))
}

func certsList(e env, args []string) int {
	fs := certsFlags(e, "list", "--dir D [--json]",
		"List every issued key (name, role, version, status, expiry, fingerprint)\nand the retired versions.")
	dir := fs.String("dir", "", "cluster directory made by 'kiln certs init' (required)")
	asJSON := fs.Bool("json", false, "print {entries, retired} as JSON")
	pos, code, ok := parseCertsFlags(fs, args)
	switch {
	case !ok:
		return code
	case len(pos) > 0:
		return usageErr(e, fs, "unexpected argument %q", pos[0])
	case *dir == "":
		return usageErr(e, fs, "--dir is required")
	}
	reg, err := auth.OpenRegistry(certs.Paths(*dir).Registry)
	if err != nil {
		return failed(e, fs, err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		err := enc.Encode(struct {
			Entries []auth.Entry          `json:"entries"`
			Retired []auth.RetiredVersion `json:"retired"`
		}{reg.Entries(), reg.Retired()})
		if err != nil {
			return failed(e, fs, err)
		}
		return 0
	}
	printRegistry(e, reg, time.Now())
	return 0
}

func printRegistry(e env, reg *auth.Registry, now time.Time) {
	entries := reg.Entries()
	if len(entries) == 0 {
		fmt.Fprintln(e.stdout, "no keys issued yet (kiln certs issue --help)")
	} else {
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tVERSION\tSTATUS\tEXPIRES\tFINGERPRINT")
		for _, en := range entries {
			status := string(en.Status)
			if en.Status == auth.StatusActive && now.After(en.Expires) {
				status = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", en.Name, en.Role, en.Version, status,
				en.Expires.Format(time.DateOnly), en.Fingerprint[:16])
		}
		tw.Flush()
	}
	retired := reg.Retired()
	if len(retired) == 0 {
		return
	}
	fmt.Fprintln(e.stdout, "\nRetired versions:")
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tVERSION\tRETIRED\tREASON")
	for _, rv := range retired {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", rv.Role, rv.Version, rv.RetiredAt.Format(time.DateOnly), rv.Reason)
	}
	tw.Flush()
}
