package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"testing"

	"kiln/certs"
)

// FuzzIdentityOf feeds arbitrary URI SANs and common names to IdentityOf:
// it must never panic, must fail with ErrNotKiln, and whatever it accepts
// must be the canonical URI of the identity it returns.
func FuzzIdentityOf(f *testing.F) {
	f.Add("kiln://slave/slave-1?version=0.1.0", "slave-1")
	f.Add("kiln://admin/ops?version=1.0.0+git.abc", "ops")
	f.Add("kiln://client/alice?version=1", "bob")
	f.Add("kiln://client/alice?version=1&x=1", "alice")
	f.Fuzz(func(t *testing.T, uri, cn string) {
		u, err := url.Parse(uri)
		if err != nil {
			return
		}
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, URIs: []*url.URL{u}}
		id, err := IdentityOf(cert)
		if err != nil {
			if !errors.Is(err, ErrNotKiln) {
				t.Fatalf("error does not wrap ErrNotKiln: %v", err)
			}
			return
		}
		want, err := certs.NodeURI(id.Role, id.Name, id.Version)
		if err != nil || want.String() != u.String() || id.Name != cn {
			t.Fatalf("accepted %q (cn %q) as %+v", uri, cn, id)
		}
	})
}
