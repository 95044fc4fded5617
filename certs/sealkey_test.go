package certs

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealKeyInCertificate(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.Issue(IssueRequest{Role: RoleSlave, Name: "s1", Version: "1.0"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := SealKeyOf(b.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, b.SealPublicKey()) {
		t.Fatalf("certificate key %x, bundle key %x", got, b.SealPublicKey())
	}
	data, err := b.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b2, err := DecodeBundle(data)
	if err != nil {
		t.Fatal(err)
	}
	if got2, err := SealKeyOf(b2.Cert); err != nil || !bytes.Equal(got2, got) {
		t.Fatalf("after decode: %x, %v", got2, err)
	}
	for _, req := range []IssueRequest{
		{Role: RoleClient, Name: "c1", Version: "1.0"},
		{Role: RoleSlave, Name: "s2", Version: "1.0", NoSealKey: true},
	} {
		b, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := SealKeyOf(b.Cert); !errors.Is(err, ErrNoSealKey) {
			t.Errorf("%s %s: SealKeyOf = %v, want ErrNoSealKey", req.Role, req.Name, err)
		}
	}
}
