package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The configuration file of `kiln master` and `kiln slave` (--config FILE)
// sets the same settings as their flags, one per line:
//
//	# comments and blank lines are ignored
//	client-addr = 0.0.0.0:7400
//	max-time = 2m
//	language-limits = java:default-memory=1GiB   (repeatable flags repeat)
//	log-format = "json"                          (quotes are optional)
//
// Every flag is a setting, under its name without dashes. A flag given on
// the command line wins over the file; an unknown setting is an error
// with its line.

// configHelp is the help text's paragraph on --config.
const configHelp = `Every flag can also be set in a configuration file (--config FILE): one
"name = value" per line, the name being the flag's without dashes, # for
comments; flags on the command line win. See docs/operations.md.
`

// loadConfig sets the flags of fs that the command line did not set from
// the file at path.
func loadConfig(fs *flag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	onCmdLine := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { onCmdLine[fl.Name] = true })
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name, value = strings.TrimLeft(strings.TrimSpace(name), "-"), strings.TrimSpace(value)
		if !ok || name == "" {
			return fmt.Errorf("%s:%d: want name = value, not %q", path, n, line)
		}
		if strings.HasPrefix(value, `"`) {
			if value, err = strconv.Unquote(value); err != nil {
				return fmt.Errorf("%s:%d: %s: bad quoted value", path, n, name)
			}
		}
		fl := fs.Lookup(name)
		if fl == nil || name == "config" {
			return fmt.Errorf("%s:%d: unknown setting %q (the settings are the flags of '%s --help')", path, n, name, fs.Name())
		}
		if onCmdLine[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", path, n, name, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// applyEnv sets the flags of a client command (run, admin, client) that
// the command line did not set from the environment: KILN_ and the flag's
// name in capitals with dashes as underscores (KILN_TIME_LIMIT=10s for
// --time-limit, KILN_JSON=true for --json). Flags win.
func applyEnv(fs *flag.FlagSet, e env) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var err error
	fs.VisitAll(func(fl *flag.Flag) {
		name := "KILN_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		v := e.getenv(name)
		if err != nil || set[fl.Name] || v == "" {
			return
		}
		if serr := fs.Set(fl.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, serr)
		}
	})
	return err
}
