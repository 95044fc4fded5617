// Package certs owns the Kiln cluster's public-key infrastructure: the
// cluster certificate authority ([CA]), the node certificates it issues for
// each role, and onboarding bundles ([Bundle]), the single 0600 PEM file a
// node needs to join the cluster.
//
// # Identity in a certificate
//
// Every node certificate carries its role, name and software version twice:
// the subject common name is the node name, and exactly one URI subject
// alternative name of the form
//
//	kiln://<role>/<name>?version=<version>
//
// holds all three (see [NodeURI] and [ParseNodeURI]). Roles are [RoleMaster],
// [RoleSlave], [RoleClient] and [RoleAdmin]. Names are 1–64 characters of
// letters, digits, '.', '_' and '-', starting with a letter or digit;
// versions the same plus '+'. No escaping is ever needed, so the URI is
// canonical: one identity has exactly one spelling.
//
// # Keys
//
// The CA and node keys are ECDSA P-256. A key's fingerprint ([Fingerprint])
// is the lowercase hex SHA-256 of its SubjectPublicKeyInfo; the key registry
// (package auth) is indexed by it.
//
// # Directory layout
//
// `kiln certs init --dir D` creates the files named by [Paths]: ca.crt,
// ca.key (0600), master.bundle (0600) and registry.json.
//
// Package certs imports only the standard library. Its functions hold no
// shared state and are safe for concurrent use; a [CA] or [Bundle] must not
// be mutated while others use it.
package certs

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
)

// Roles a certificate can carry.
const (
	RoleMaster = "master" // the master's server certificate
	RoleSlave  = "slave"  // a worker that compiles and runs programs
	RoleClient = "client" // a user submitting programs
	RoleAdmin  = "admin"  // an operator using `kiln admin`
)

// URIScheme is the scheme of the identity URI SAN.
const URIScheme = "kiln"

// File names inside a cluster directory.
const (
	CACertFile       = "ca.crt"
	CAKeyFile        = "ca.key"
	MasterBundleFile = "master.bundle"
	RegistryFile     = "registry.json"
)

// Layout names the files of a cluster directory.
type Layout struct {
	Dir          string
	CACert       string // ca.crt, 0644
	CAKey        string // ca.key, 0600; keep offline when you can
	MasterBundle string // master.bundle, 0600
	Registry     string // registry.json, 0644
}

// Paths returns the layout of the cluster directory dir.
func Paths(dir string) Layout {
	return Layout{
		Dir:          dir,
		CACert:       filepath.Join(dir, CACertFile),
		CAKey:        filepath.Join(dir, CAKeyFile),
		MasterBundle: filepath.Join(dir, MasterBundleFile),
		Registry:     filepath.Join(dir, RegistryFile),
	}
}

// ErrBadIdentity is wrapped by every error about a malformed role, name,
// version or identity URI.
var ErrBadIdentity = errors.New("bad kiln identity")

// ValidRole reports whether role is one of the four Kiln roles.
func ValidRole(role string) bool {
	switch role {
	case RoleMaster, RoleSlave, RoleClient, RoleAdmin:
		return true
	}
	return false
}

// CheckName returns an error wrapping [ErrBadIdentity] unless name is a
// valid node name.
func CheckName(name string) error {
	if !validToken(name, "") {
		return fmt.Errorf("%w: name %q must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", ErrBadIdentity, name)
	}
	return nil
}

// CheckVersion returns an error wrapping [ErrBadIdentity] unless version is
// a valid software version.
func CheckVersion(version string) error {
	if !validToken(version, "+") {
		return fmt.Errorf("%w: version %q must be 1-64 letters, digits, '.', '_', '-' or '+', starting with a letter or digit", ErrBadIdentity, version)
	}
	return nil
}

func validToken(s, extra string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		switch {
		case alnum:
		case i == 0:
			return false
		case c == '.' || c == '_' || c == '-':
		case extra != "" && c == extra[0]:
		default:
			return false
		}
	}
	return true
}

// NodeURI returns the identity URI kiln://role/name?version=version.
// It returns an error wrapping [ErrBadIdentity] if a part is invalid.
func NodeURI(role, name, version string) (*url.URL, error) {
	if !ValidRole(role) {
		return nil, fmt.Errorf("%w: unknown role %q (want master, slave, client or admin)", ErrBadIdentity, role)
	}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if err := CheckVersion(version); err != nil {
		return nil, err
	}
	return &url.URL{Scheme: URIScheme, Host: role, Path: "/" + name, RawQuery: "version=" + version}, nil
}

// ParseNodeURI parses an identity URI made by [NodeURI]. It accepts only the
// canonical form and returns an error wrapping [ErrBadIdentity] otherwise.
func ParseNodeURI(u *url.URL) (role, name, version string, err error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: URI %q: %s", ErrBadIdentity, u.String(), why)
	}
	switch {
	case u.Scheme != URIScheme:
		return "", "", "", bad("scheme is not kiln")
	case u.User != nil || u.Opaque != "" || u.Fragment != "" || u.RawFragment != "" || u.ForceQuery:
		return "", "", "", bad("unexpected user, opaque part or fragment")
	case len(u.Path) < 2 || u.Path[0] != '/' || u.RawPath != "":
		return "", "", "", bad("want kiln://<role>/<name>?version=<v>")
	case len(u.RawQuery) <= len("version=") || u.RawQuery[:len("version=")] != "version=":
		return "", "", "", bad("missing version")
	}
	role, name, version = u.Host, u.Path[1:], u.RawQuery[len("version="):]
	want, err := NodeURI(role, name, version)
	if err != nil {
		return "", "", "", fmt.Errorf("URI %q: %w", u.String(), err)
	}
	if *want != *u {
		return "", "", "", bad("not in canonical form")
	}
	return role, name, version, nil
}
