package auth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"kiln/certs"
)

// state is one immutable version of the registry contents.
type state struct {
	entries []Entry
	retired []RetiredVersion
}

func emptyState() *state { return &state{entries: []Entry{}, retired: []RetiredVersion{}} }

func (st *state) clone() *state {
	return &state{entries: slices.Clone(st.entries), retired: slices.Clone(st.retired)}
}

func (st *state) byFingerprint(fp string) (int, bool) {
	for i := range st.entries {
		if st.entries[i].Fingerprint == fp {
			return i, true
		}
	}
	return -1, false
}

func (st *state) isRetired(role, version string) bool {
	for _, rv := range st.retired {
		if rv.Role == role && rv.Version == version {
			return true
		}
	}
	return false
}

func (st *state) activeNamed(name string) (int, bool) {
	for i := range st.entries {
		if st.entries[i].Name == name && st.entries[i].Status == StatusActive {
			return i, true
		}
	}
	return -1, false
}

// validate checks what an operator may have got wrong editing the file.
func (st *state) validate() error {
	fps := map[string]bool{}
	names := map[string]bool{}
	for i, e := range st.entries {
		if err := e.validate(); err != nil {
			return fmt.Errorf("entry %d: %w", i+1, err)
		}
		if fps[e.Fingerprint] {
			return fmt.Errorf("entry %d: duplicate fingerprint %s", i+1, e.Fingerprint)
		}
		fps[e.Fingerprint] = true
		if e.Status == StatusActive {
			if names[e.Name] {
				return fmt.Errorf("entry %d: two active keys named %q", i+1, e.Name)
			}
			names[e.Name] = true
		}
	}
	for i, rv := range st.retired {
		if !certs.ValidRole(rv.Role) {
			return fmt.Errorf("retired %d: unknown role %q", i+1, rv.Role)
		}
		if err := certs.CheckVersion(rv.Version); err != nil {
			return fmt.Errorf("retired %d: %w", i+1, err)
		}
	}
	return nil
}

func (e Entry) validate() error {
	if !validFingerprint(e.Fingerprint) {
		return fmt.Errorf("fingerprint %q is not 64 lowercase hex digits", e.Fingerprint)
	}
	if !certs.ValidRole(e.Role) {
		return fmt.Errorf("unknown role %q", e.Role)
	}
	if err := certs.CheckName(e.Name); err != nil {
		return err
	}
	if err := certs.CheckVersion(e.Version); err != nil {
		return err
	}
	switch e.Status {
	case StatusActive, StatusRevoked, StatusRetired:
		return nil
	}
	return fmt.Errorf("status %q is not active, revoked or retired", e.Status)
}

func validFingerprint(fp string) bool {
	if len(fp) != 64 {
		return false
	}
	for i := 0; i < len(fp); i++ {
		if c := fp[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// mutate applies fn to a copy of the current file contents and saves the
// result. It re-reads the file first so that changes made by another
// process are not lost, and refuses to overwrite a file it cannot parse.
func (r *Registry) mutate(fn func(st *state) ([]Entry, error)) ([]Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.loadLocked(false); err != nil {
		if errors.Is(err, ErrInvalid) {
			return nil, fmt.Errorf("%w; fix or restore the file first", err)
		}
		return nil, err
	}
	st := r.st.clone()
	affected, err := fn(st)
	if err != nil {
		return nil, err
	}
	if err := r.saveLocked(st); err != nil {
		return nil, err
	}
	return affected, nil
}

// Add records a newly issued key. The status defaults to active and Issued
// to now. It refuses an invalid entry, a fingerprint already present, a name
// held by another active key ([ErrNameTaken]) and a retired (role, version)
// ([ErrRetired]).
func (r *Registry) Add(e Entry) error {
	if e.Status == "" {
		e.Status = StatusActive
	}
	if e.Issued.IsZero() {
		e.Issued = r.now().UTC()
	}
	if err := e.validate(); err != nil {
		return fmt.Errorf("auth: add %s: %w", e.Name, err)
	}
	_, err := r.mutate(func(st *state) ([]Entry, error) {
		if _, ok := st.byFingerprint(e.Fingerprint); ok {
			return nil, fmt.Errorf("auth: key %s is already registered", e.Fingerprint)
		}
		if e.Status == StatusActive {
			if _, ok := st.activeNamed(e.Name); ok {
				return nil, fmt.Errorf("auth: %w: an active key is already named %s (revoke it first)", ErrNameTaken, e.Name)
			}
			if st.isRetired(e.Role, e.Version) {
				return nil, fmt.Errorf("auth: %w: version %s of %s keys is retired", ErrRetired, e.Version, e.Role)
			}
		}
		st.entries = append(st.entries, e)
		return []Entry{e}, nil
	})
	return err
}

// RevokeName revokes the active key named name and returns it.
func (r *Registry) RevokeName(name, reason string) ([]Entry, error) {
	return r.mutate(func(st *state) ([]Entry, error) {
		i, ok := st.activeNamed(name)
		if !ok {
			return nil, fmt.Errorf("auth: %w: no active key named %s", ErrNoMatch, name)
		}
		return []Entry{st.revoke(i, StatusRevoked, reason, r.now())}, nil
	})
}

// RevokeFingerprint revokes the key with fingerprint fp (active or retired)
// and returns it.
func (r *Registry) RevokeFingerprint(fp, reason string) ([]Entry, error) {
	return r.mutate(func(st *state) ([]Entry, error) {
		i, ok := st.byFingerprint(fp)
		switch {
		case !ok:
			return nil, fmt.Errorf("auth: %w: no key with fingerprint %s", ErrNoMatch, fp)
		case st.entries[i].Status == StatusRevoked:
			return nil, fmt.Errorf("auth: %w: key %s of %s is already revoked", ErrNoMatch, fp, st.entries[i].Name)
		}
		return []Entry{st.revoke(i, StatusRevoked, reason, r.now())}, nil
	})
}

// Retire marks every active key of role and version retired and records
// the pair, so that keys issued later for it are refused too. It returns the
// entries it changed; retiring a pair twice is not an error.
func (r *Registry) Retire(role, version, reason string) ([]Entry, error) {
	if !certs.ValidRole(role) {
		return nil, fmt.Errorf("auth: retire: unknown role %q", role)
	}
	if err := certs.CheckVersion(version); err != nil {
		return nil, fmt.Errorf("auth: retire: %w", err)
	}
	return r.mutate(func(st *state) ([]Entry, error) {
		now := r.now().UTC()
		var affected []Entry
		for i, e := range st.entries {
			if e.Role == role && e.Version == version && e.Status == StatusActive {
				affected = append(affected, st.revoke(i, StatusRetired, reason, now))
			}
		}
		if !st.isRetired(role, version) {
			st.retired = append(st.retired, RetiredVersion{Role: role, Version: version, RetiredAt: now, Reason: reason})
		}
		return affected, nil
	})
}

// Unretire undoes Retire: the (role, version) pair is no longer retired,
// and the keys retired with it are active again (keys revoked one by one
// stay revoked, and so does one whose name an active key holds now). It
// returns the entries it changed, and ErrNoMatch when
// the pair is not retired.
func (r *Registry) Unretire(role, version string) ([]Entry, error) {
	return r.mutate(func(st *state) ([]Entry, error) {
		if !st.isRetired(role, version) {
			return nil, fmt.Errorf("%w: %s %s is not retired", ErrNoMatch, role, version)
		}
		st.retired = slices.DeleteFunc(st.retired, func(rv RetiredVersion) bool { return rv.Role == role && rv.Version == version })
		active := map[string]bool{}
		for _, e := range st.entries {
			active[e.Name] = active[e.Name] || e.Status == StatusActive
		}
		var affected []Entry
		for i := range st.entries {
			e := &st.entries[i]
			// A key whose name was issued again since stays retired.
			if e.Role == role && e.Version == version && e.Status == StatusRetired && !active[e.Name] {
				e.Status, e.RevokedAt, e.Reason = StatusActive, time.Time{}, ""
				affected = append(affected, *e)
			}
		}
		return affected, nil
	})
}

func (st *state) revoke(i int, status Status, reason string, now time.Time) Entry {
	e := &st.entries[i]
	e.Status, e.RevokedAt, e.Reason = status, now.UTC(), reason
	return *e
}
