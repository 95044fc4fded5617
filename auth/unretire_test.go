package auth

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnretire: un-retiring a pair reactivates the keys retired with it,
// not the ones revoked one by one, and a pair never retired is refused.
func TestUnretire(t *testing.T) {
	r, err := CreateRegistry(filepath.Join(t.TempDir(), "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b"} {
		if err := r.Add(Entry{Fingerprint: strings.Repeat(string(rune('a'+i)), 64), Role: "client", Name: name, Version: "0.1.0",
			Expires: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.RevokeName("b", "lost"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Retire("client", "0.1.0", "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Unretire("client", "9.9.9"); !errors.Is(err, ErrNoMatch) {
		t.Errorf("unretire of a pair never retired: %v", err)
	}
	changed, err := r.Unretire("client", "0.1.0")
	if err != nil || len(changed) != 1 || changed[0].Name != "a" {
		t.Fatalf("Unretire = %+v, %v", changed, err)
	}
	if _, ok := r.Lookup("a"); !ok || len(r.Retired()) != 0 {
		t.Errorf("a active: %v, retired pairs %v", ok, r.Retired())
	}
	if _, ok := r.Lookup("b"); ok {
		t.Error("the key revoked one by one came back")
	}
}
