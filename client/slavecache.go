package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"kiln/certs"
)

// SlaveHint is a slave that a sealed job of Language went to: its name and
// its certificate (DER), as a WrapRequest named them and the client
// checked. A one-shot client (kiln run) keeps them on disk between runs
// ([LoadSlaveHints], [SaveSlaveHints]) and hands them to its next session
// with [Client.RememberSlaves], so that its first job's key is wrapped in
// the Submit too. A hint holds public data only: no key.
type SlaveHint struct {
	Language string `json:"lang"`
	Slave    string `json:"slave"`
	Cert     []byte `json:"cert"`
}

// Bounds of a slave cache file (docs/client.md, "Slave cache"). A file
// over MaxSlaveCacheBytes or with more than MaxSlaveHints entries is
// ignored whole; entries past DefaultSealAhead per language are dropped by
// RememberSlaves like any slave learned past it.
const (
	MaxSlaveCacheBytes = 64 << 10
	MaxSlaveHints      = 32
)

// slaveCacheVersion is the format of a slave cache file.
const slaveCacheVersion = 1

// ErrSlaveCache is matched by every reason [LoadSlaveHints] ignores a file
// for, except that it does not exist.
var ErrSlaveCache = errors.New("slave cache ignored")

// slaveCacheFile is the JSON of a slave cache file. CA and Client are the
// fingerprints of the bundle it was written for: a file of another
// cluster or key is not used.
type slaveCacheFile struct {
	Version int         `json:"version"`
	CA      string      `json:"ca"`
	Client  string      `json:"client"`
	Slaves  []SlaveHint `json:"slaves"`
}

// SlaveCacheName is the file name of b's slave cache, in a directory of the
// caller's choice (kiln run: the user's cache directory): per cluster CA
// and client certificate.
func SlaveCacheName(b *certs.Bundle) string {
	return fmt.Sprintf("slaves-%.16s-%.16s.json", certs.Fingerprint(b.CA), b.Fingerprint())
}

// LoadSlaveHints reads the slave cache at path, written for bundle b. It
// returns an error matching fs.ErrNotExist when there is none, and one
// matching ErrSlaveCache when the file is too large, does not decode, or
// was written for another CA or client certificate. The hints' certificates
// are not checked here: [Client.RememberSlaves] does.
func LoadSlaveHints(path string, b *certs.Bundle) ([]SlaveHint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSlaveCacheBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSlaveCache, path, err)
	}
	if len(data) > MaxSlaveCacheBytes {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrSlaveCache, path, MaxSlaveCacheBytes)
	}
	return decodeSlaveCache(data, b)
}

// decodeSlaveCache decodes a slave cache file's bytes for bundle b.
func decodeSlaveCache(data []byte, b *certs.Bundle) ([]SlaveHint, error) {
	var sf slaveCacheFile
	if err := json.Unmarshal(data, &sf); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSlaveCache, err)
	}
	switch {
	case sf.Version != slaveCacheVersion:
		return nil, fmt.Errorf("%w: version %d, want %d", ErrSlaveCache, sf.Version, slaveCacheVersion)
	case sf.CA != certs.Fingerprint(b.CA):
		return nil, fmt.Errorf("%w: written for another cluster CA", ErrSlaveCache)
	case sf.Client != b.Fingerprint():
		return nil, fmt.Errorf("%w: written for another client certificate", ErrSlaveCache)
	case len(sf.Slaves) > MaxSlaveHints:
		return nil, fmt.Errorf("%w: %d slaves, at most %d", ErrSlaveCache, len(sf.Slaves), MaxSlaveHints)
	}
	return sf.Slaves, nil
}

// encodeSlaveCache is the file SaveSlaveHints writes: at most
// MaxSlaveHints hints, the first ones.
func encodeSlaveCache(b *certs.Bundle, hints []SlaveHint) ([]byte, error) {
	if hints == nil {
		hints = []SlaveHint{}
	}
	sf := slaveCacheFile{Version: slaveCacheVersion, CA: certs.Fingerprint(b.CA), Client: b.Fingerprint(),
		Slaves: hints[:min(len(hints), MaxSlaveHints)]}
	data, err := json.Marshal(sf)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSlaveCacheBytes {
		return nil, fmt.Errorf("slave cache: %d bytes, over %d", len(data), MaxSlaveCacheBytes)
	}
	return data, nil
}

// SaveSlaveHints writes hints for bundle b to path atomically (a 0600
// temporary file in the same directory, renamed over path), creating the
// directory (0700) if needed. It does nothing when the file already holds
// exactly these hints.
func SaveSlaveHints(path string, b *certs.Bundle, hints []SlaveHint) error {
	data, err := encodeSlaveCache(b, hints)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".slaves-*.tmp") // 0600
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename: nothing
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// RememberSlaves hands the client slaves that its sealed jobs of a
// language went to in an earlier session (most recent first), so that
// this session's jobs wrap their keys for them in the Submit. Each
// certificate is checked exactly as a WrapRequest's is (it chains to the
// bundle's CA, names role slave and that slave, has not expired, and
// carries a sealing key); a hint that fails is dropped, and its error
// returned. A client with SealAhead negative remembers nothing.
func (c *Client) RememberSlaves(hints []SlaveHint) []error {
	var errs []error
	for i := len(hints) - 1; i >= 0; i-- { // learn puts the last first
		h := hints[i]
		if h.Language == "" {
			errs = append(errs, fmt.Errorf("slave %q: no language", h.Slave))
			continue
		}
		if _, err := c.keys.get(h.Slave, h.Cert); err != nil {
			errs = append(errs, fmt.Errorf("slave %q (%s): %w", h.Slave, h.Language, err))
			continue
		}
		c.ahead.learn(h.Language, h.Slave, h.Cert)
	}
	return errs
}

// SlaveHints returns the slaves this session's sealed jobs of each
// language would be wrapped for next, most recent first: what a one-shot
// client saves for its next session.
func (c *Client) SlaveHints() []SlaveHint { return c.ahead.hints() }

// hints lists every language's slaves.
func (a *aheadSlaves) hints() []SlaveHint {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []SlaveHint
	for lang, al := range a.m {
		for _, s := range al.slaves {
			out = append(out, SlaveHint{Language: lang, Slave: s.name, Cert: s.cert})
		}
	}
	slices.SortStableFunc(out, func(x, y SlaveHint) int { return strings.Compare(x.Language, y.Language) })
	return out
}
