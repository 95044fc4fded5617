package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"kiln/certs"
)

// Status is the state of a registry entry.
type Status string

// Entry statuses.
const (
	StatusActive  Status = "active"  // the key may connect
	StatusRevoked Status = "revoked" // revoked by name or fingerprint
	StatusRetired Status = "retired" // its (role, version) was retired
)

// Entry is one issued key in the registry file.
type Entry struct {
	Fingerprint string    `json:"fingerprint"` // certs.Fingerprint, 64 lowercase hex digits
	Role        string    `json:"role"`
	Name        string    `json:"name"`
	Version     string    `json:"version"`
	Status      Status    `json:"status"`
	Issued      time.Time `json:"issued"`
	Expires     time.Time `json:"expires"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"` // when revoked or retired
	Reason      string    `json:"reason,omitempty"`
}

// RetiredVersion is a (role, version) pair that may no longer connect,
// whenever its keys were issued.
type RetiredVersion struct {
	Role      string    `json:"role"`
	Version   string    `json:"version"`
	RetiredAt time.Time `json:"retired_at"`
	Reason    string    `json:"reason,omitempty"`
}

// fileFormat is the JSON document of registry.json.
type fileFormat struct {
	Format  int              `json:"format"`
	Entries []Entry          `json:"entries"`
	Retired []RetiredVersion `json:"retired"`
}

const formatVersion = 1

// Registry errors other than the Check outcomes.
var (
	ErrNameTaken = errors.New("name already in use")
	ErrNoMatch   = errors.New("no matching key")
	ErrInvalid   = errors.New("invalid registry")
)

// Registry is the key registry backed by one JSON file. It is safe for
// concurrent use. Mutations re-read the file first and replace it
// atomically; concurrent writers in different processes are not serialized
// (the last writer wins), so run one `kiln certs` command at a time.
type Registry struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.RWMutex
	st      *state      // immutable once published
	gen     uint64      // bumped on every change of st
	fi      os.FileInfo // of the file st was read from or written to
	sum     [32]byte    // SHA-256 of that file
	checked time.Time   // last time the content was hashed
	lastErr string      // last reload error logged, to log each only once
}

// RegistryOption configures [OpenRegistry] and [CreateRegistry].
type RegistryOption func(*Registry)

// WithLogger sets the logger for reload problems (default: discard).
func WithLogger(l *slog.Logger) RegistryOption { return func(r *Registry) { r.log = l } }

// WithRegistryClock sets the clock used for expiry checks and timestamps.
func WithRegistryClock(now func() time.Time) RegistryOption {
	return func(r *Registry) { r.now = now }
}

func newRegistry(path string, opts []RegistryOption) *Registry {
	r := &Registry{path: path, log: slog.New(slog.DiscardHandler), now: time.Now, st: emptyState()}
	for _, opt := range opts {
		opt(r)
	}
	return r
}

// OpenRegistry loads the registry file at path, which must exist.
func OpenRegistry(path string, opts ...RegistryOption) (*Registry, error) {
	r := newRegistry(path, opts)
	if err := r.Reload(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("auth: registry %s does not exist (run kiln certs init): %w", path, err)
		}
		return nil, err
	}
	return r, nil
}

// CreateRegistry writes a new empty registry file at path and opens it. It
// fails if the file exists.
func CreateRegistry(path string, opts ...RegistryOption) (*Registry, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("auth: create registry: %w", err)
	}
	f.Close()
	r := newRegistry(path, opts)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.saveLocked(emptyState()); err != nil {
		os.Remove(path)
		return nil, err
	}
	return r, nil
}

// Path returns the registry file path.
func (r *Registry) Path() string { return r.path }

// Entries returns a copy of every entry, in issue order.
func (r *Registry) Entries() []Entry { return slices.Clone(r.snapshot().entries) }

// Retired returns a copy of the retired (role, version) pairs.
func (r *Registry) Retired() []RetiredVersion { return slices.Clone(r.snapshot().retired) }

// Lookup returns the active entry named name.
func (r *Registry) Lookup(name string) (Entry, bool) {
	for _, e := range r.snapshot().entries {
		if e.Name == name && e.Status == StatusActive {
			return e, true
		}
	}
	return Entry{}, false
}

func (r *Registry) snapshot() *state {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.st
}

// Reload re-reads the file. On error the last good state is kept.
func (r *Registry) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked(true)
}

// loadLocked reads the file and installs it; when force is false it skips
// parsing if the content hash has not changed.
func (r *Registry) loadLocked(force bool) error {
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("auth: registry: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("auth: registry: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("auth: registry %s: %w", r.path, err)
	}
	sum := sha256.Sum256(data)
	r.checked = time.Now()
	if !force && sum == r.sum {
		r.fi = fi
		return nil
	}
	st, err := parseState(data)
	if err != nil {
		return fmt.Errorf("auth: registry %s: %w", r.path, err)
	}
	r.install(st, fi, sum)
	return nil
}

func (r *Registry) install(st *state, fi os.FileInfo, sum [32]byte) {
	if sum != r.sum {
		r.gen++
	}
	r.st, r.fi, r.sum = st, fi, sum
}

// saveLocked writes st to the file atomically and installs it.
func (r *Registry) saveLocked(st *state) error {
	data, err := json.MarshalIndent(fileFormat{Format: formatVersion, Entries: st.entries, Retired: st.retired}, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: registry: %w", err)
	}
	data = append(data, '\n')
	if err := certs.WriteFileAtomic(r.path, data, 0o644); err != nil {
		return fmt.Errorf("auth: save registry: %w", err)
	}
	fi, err := os.Stat(r.path)
	if err != nil {
		return fmt.Errorf("auth: save registry: %w", err)
	}
	r.install(st, fi, sha256.Sum256(data))
	return nil
}

func parseState(data []byte) (*state, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ff fileFormat
	if err := dec.Decode(&ff); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if ff.Format != formatVersion {
		return nil, fmt.Errorf("%w: format %d, want %d", ErrInvalid, ff.Format, formatVersion)
	}
	st := &state{entries: ff.Entries, retired: ff.Retired}
	if st.entries == nil {
		st.entries = []Entry{}
	}
	if st.retired == nil {
		st.retired = []RetiredVersion{}
	}
	if err := st.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return st, nil
}
