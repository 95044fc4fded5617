package main

import (
	"errors"
	"fmt"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// The messages in this file turn the errors users meet first into what to
// do next: the wrong bundle, the wrong port, an expired key.

// checkBundle checks a bundle before it is used to dial: its role must be
// one of roles and its key must not have expired. The error says which
// bundle it is and what to do instead.
func checkBundle(path string, b *certs.Bundle, now time.Time, roles ...string) error {
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ok := false
	for _, r := range roles {
		ok = ok || id.Role == r
	}
	if !ok {
		return fmt.Errorf("%s is a %s bundle (%s); this command needs a %s bundle ('kiln certs issue --role %s')",
			path, id.Role, id.Name, roles[0], roles[0])
	}
	if now.After(b.Cert.NotAfter) {
		return fmt.Errorf("the key in %s (%s %s) expired on %s; ask the cluster's operator for a new bundle "+
			"('kiln certs issue --role %s --name %s')", path, id.Role, id.Name,
			b.Cert.NotAfter.UTC().Format(time.DateOnly), id.Role, id.Name)
	}
	return nil
}

// portHint explains a role_mismatch refusal, which means the address
// dialled is the master's port for the other kind of peer. asSlave tells
// which side is asking.
func portHint(err error, addr string, asSlave bool) error {
	var ref *transport.RefusedError
	if !errors.As(err, &ref) || ref.Code != wire.CodeRoleMismatch {
		return err
	}
	if asSlave {
		return fmt.Errorf("%w: %s is the master's client port; slaves connect to its slave port "+
			"('kiln master --slave-addr', 7401 by default)", err, addr)
	}
	return fmt.Errorf("%w: %s is the master's slave port; clients and admins connect to its client port "+
		"('kiln master --client-addr', 7400 by default)", err, addr)
}
