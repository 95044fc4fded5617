package auth

import (
	"errors"
	"fmt"
	"time"
)

// Outcomes of [Registry.Check]. The master maps them to wire refusal codes.
var (
	ErrUnknownKey      = errors.New("unknown key")
	ErrRevoked         = errors.New("key revoked")
	ErrRetired         = errors.New("version retired")
	ErrVersionMismatch = errors.New("version mismatch")
	ErrRoleMismatch    = errors.New("role mismatch")
	ErrExpired         = errors.New("key expired")
)

// checkError is a one-line human message wrapping a Check sentinel.
type checkError struct {
	kind error
	msg  string
}

func (e *checkError) Error() string { return e.msg }
func (e *checkError) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &checkError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Check decides whether the peer id, which announced helloVersion in its
// Hello, may connect. It returns nil or an error wrapping one of
// [ErrUnknownKey], [ErrRevoked], [ErrRetired], [ErrRoleMismatch],
// [ErrExpired] or [ErrVersionMismatch], checked in that order.
func (r *Registry) Check(id Identity, helloVersion string) error {
	return r.snapshot().check(id, helloVersion, r.now())
}

// Denied re-checks live peers against the current registry and returns,
// keyed by fingerprint, the error of each one that may no longer stay.
// Each peer is checked with the version in its certificate (the Hello
// version was required to match it at admission).
func (r *Registry) Denied(ids []Identity) map[string]error {
	st, now := r.snapshot(), r.now()
	denied := map[string]error{}
	for _, id := range ids {
		if err := st.check(id, id.Version, now); err != nil {
			denied[id.Fingerprint] = err
		}
	}
	return denied
}

func (st *state) check(id Identity, helloVersion string, now time.Time) error {
	i, ok := st.byFingerprint(id.Fingerprint)
	if !ok {
		return refuse(ErrUnknownKey, "key of %s %s is not in the registry", id.Role, id.Name)
	}
	e := st.entries[i]
	switch {
	case e.Status == StatusRevoked:
		return refuse(ErrRevoked, "key of %s is revoked", e.Name)
	case e.Status == StatusRetired || st.isRetired(e.Role, e.Version):
		return refuse(ErrRetired, "version %s of %s keys is retired (%s)", e.Version, e.Role, e.Name)
	case e.Name != id.Name:
		return refuse(ErrUnknownKey, "key registered for %s is presented by %s", e.Name, id.Name)
	case e.Role != id.Role:
		return refuse(ErrRoleMismatch, "key of %s is registered as %s but its certificate says %s", e.Name, e.Role, id.Role)
	case now.After(id.NotAfter) || (!e.Expires.IsZero() && now.After(e.Expires)):
		return refuse(ErrExpired, "key of %s expired on %s", e.Name, earliest(id.NotAfter, e.Expires).Format(time.DateOnly))
	case id.Version != e.Version:
		return refuse(ErrVersionMismatch, "certificate of %s is for version %s, its registry entry for %s", e.Name, id.Version, e.Version)
	case helloVersion != e.Version:
		return refuse(ErrVersionMismatch, "%s runs version %s but its key is for version %s", e.Name, helloVersion, e.Version)
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if b.IsZero() || (!a.IsZero() && a.Before(b)) {
		return a
	}
	return b
}
