package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"kiln/certs"
	"kiln/client"
)

// runSlaveCache is kiln run's memory, between runs, of the slaves its sealed
// jobs of each language went to (docs/client.md, "Slave cache"): a small
// file under the user's cache directory, per cluster CA and client
// certificate, so that a one-shot run wraps its job's key in the Submit
// and skips the master's WrapRequest round trip. A nil *runSlaveCache is off.
type runSlaveCache struct {
	path   string
	bundle *certs.Bundle
}

// runSlaveCacheDir is the directory of the slave cache files: kiln under
// $XDG_CACHE_HOME, else under $HOME/.cache (the environment through e, so
// that an in-process test touches no real home); "" when neither is set.
func runSlaveCacheDir(e env) string {
	if d := e.getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "kiln")
	}
	if h := e.getenv("HOME"); filepath.IsAbs(h) {
		return filepath.Join(h, ".cache", "kiln")
	}
	return ""
}

// openRunSlaveCache reads the slave cache of b and hands its slaves to c,
// each certificate checked by c.RememberSlaves as a WrapRequest's is. A
// file that is missing is no news; one that is too large, corrupt, of
// another cluster or key, or holds a slave that fails the checks is
// ignored (that slave, or the whole file) with one line on stderr, and
// the run goes on: it is rewritten at the end of the run.
func openRunSlaveCache(e env, cmd string, b *certs.Bundle, c *client.Client) *runSlaveCache {
	dir := runSlaveCacheDir(e)
	if dir == "" || b == nil {
		return nil
	}
	s := &runSlaveCache{path: filepath.Join(dir, client.SlaveCacheName(b)), bundle: b}
	hints, err := client.LoadSlaveHints(s.path, b)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(e.stderr, "kiln %s: warning: %v\n", cmd, err)
		}
		return s
	}
	for _, err := range c.RememberSlaves(hints) {
		fmt.Fprintf(e.stderr, "kiln %s: warning: slave cache %s: ignoring %v\n", cmd, s.path, err)
	}
	return s
}

// save writes the slaves c's sealed jobs would be wrapped for next. After
// a run that ended in an internal error (a wrap the slave could not open:
// it has a new sealing key under the same name) the file is removed
// instead, so one such run is the most it costs.
func (s *runSlaveCache) save(e env, cmd string, c *client.Client, code int) {
	if s == nil {
		return
	}
	if code == exitInternal {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(e.stderr, "kiln %s: warning: slave cache: %v\n", cmd, err)
		}
		return
	}
	if err := client.SaveSlaveHints(s.path, s.bundle, c.SlaveHints()); err != nil {
		fmt.Fprintf(e.stderr, "kiln %s: warning: slave cache not saved: %v\n", cmd, err)
	}
}
