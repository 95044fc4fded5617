package seal

import (
	"bytes"
	"testing"
)

// TestContextsBindJobAttemptAndKey: each part of a wrap context changes it,
// so a wrap for one job, attempt or content key opens for no other.
func TestContextsBindJobAttemptAndKey(t *testing.T) {
	k1, k2 := NewContentKey(), NewContentKey()
	base := OutputContext(k1, "J1", 1)
	for name, other := range map[string][]byte{
		"another key":     OutputContext(k2, "J1", 1),
		"another job":     OutputContext(k1, "J2", 1),
		"another attempt": OutputContext(k1, "J1", 2),
		"the input":       InputContext("J1"),
	} {
		if bytes.Equal(base, other) {
			t.Errorf("output context equals that of %s", name)
		}
	}
	if !bytes.Equal(base, OutputContext(k1, "J1", 1)) {
		t.Error("output context is not deterministic")
	}
	if bytes.Equal(InputContext("J1"), InputContext("J2")) {
		t.Error("input contexts of two jobs are equal")
	}
}
