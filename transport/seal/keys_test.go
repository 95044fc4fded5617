package seal

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(priv) != KeySize || len(pub) != KeySize {
		t.Fatalf("key sizes %d, %d", len(priv), len(pub))
	}
	got, err := PublicKey(priv)
	if err != nil || !bytes.Equal(got, pub) {
		t.Fatalf("PublicKey = %x, %v; want %x", got, err, pub)
	}
	priv2, _, _ := GenerateKey()
	if bytes.Equal(priv, priv2) {
		t.Fatal("two keys are equal")
	}
	if _, err := PublicKey(priv[:31]); err == nil {
		t.Fatal("PublicKey accepted a 31-byte key")
	}
}

func TestWrapRoundTrip(t *testing.T) {
	priv, pub, _ := GenerateKey()
	ck := NewContentKey()
	ctx := Context("42", "input")
	w1, err := Wrap(ck, pub, ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(w1) != WrappedSize {
		t.Fatalf("wrapped key is %d bytes, want %d", len(w1), WrappedSize)
	}
	got, err := Unwrap(w1, priv, ctx)
	if err != nil || !bytes.Equal(got, ck) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	w2, _ := Wrap(ck, pub, ctx)
	if bytes.Equal(w1, w2) {
		t.Fatal("two wraps of one key are equal: the ephemeral key is not fresh")
	}
}

func TestUnwrapFailures(t *testing.T) {
	priv, pub, _ := GenerateKey()
	otherPriv, _, _ := GenerateKey()
	ck := NewContentKey()
	ctx := Context("42", "input")
	w, _ := Wrap(ck, pub, ctx)

	cases := []struct {
		name    string
		wrapped []byte
		priv    []byte
		ctx     []byte
		err     error
	}{
		{"wrong recipient", w, otherPriv, ctx, ErrWrongKey},
		{"other job", w, priv, Context("43", "input"), ErrWrongKey},
		{"other purpose", w, priv, Context("42", "output"), ErrWrongKey},
		{"no context", w, priv, nil, ErrWrongKey},
		{"short", w[:WrappedSize-1], priv, ctx, ErrTampered},
		{"long", append(bytes.Clone(w), 0), priv, ctx, ErrTampered},
		{"empty", nil, priv, ctx, ErrTampered},
		{"low-order ephemeral", append(append([]byte{wrapVersion}, make([]byte, KeySize)...), w[1+KeySize:]...), priv, ctx, ErrTampered},
	}
	for i := range w {
		bad := bytes.Clone(w)
		bad[i] ^= 0x04
		want := ErrWrongKey
		if i == 0 {
			want = ErrTampered
		}
		cases = append(cases, struct {
			name    string
			wrapped []byte
			priv    []byte
			ctx     []byte
			err     error
		}{fmt.Sprintf("flip byte %d", i), bad, priv, ctx, want})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Unwrap(tc.wrapped, tc.priv, tc.ctx)
			if got != nil {
				t.Fatalf("Unwrap returned a key with error %v", err)
			}
			requireSentinel(t, err, tc.err)
		})
	}
	if _, err := Unwrap(w, priv[:5], ctx); err == nil {
		t.Fatal("Unwrap accepted a 5-byte private key")
	}
}

func TestWrapRejectsBadInput(t *testing.T) {
	_, pub, _ := GenerateKey()
	if _, err := Wrap(make([]byte, 16), pub, nil); err == nil {
		t.Error("Wrap accepted a 16-byte content key")
	}
	if _, err := Wrap(NewContentKey(), pub[:31], nil); err == nil {
		t.Error("Wrap accepted a 31-byte public key")
	}
	if _, err := Wrap(NewContentKey(), make([]byte, KeySize), nil); err == nil {
		t.Error("Wrap accepted a low-order public key")
	}
}

func TestContextIsInjective(t *testing.T) {
	pairs := [][2][]string{
		{{"ab", "c"}, {"a", "bc"}},
		{{"a"}, {"a", ""}},
		{{}, {""}},
		{{"1", "23"}, {"12", "3"}},
	}
	for _, p := range pairs {
		if bytes.Equal(Context(p[0]...), Context(p[1]...)) {
			t.Errorf("Context(%q) == Context(%q)", p[0], p[1])
		}
	}
}

// testEphemeral returns a fixed ephemeral key.
func testEphemeral(t testing.TB) *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x42}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestScalarMults counts what each key operation costs and checks that a
// parsed key unwraps what the bytes do, and nothing else.
func TestScalarMults(t *testing.T) {
	priv, pub, _ := GenerateKey()
	ck, ctx := NewContentKey(), Context("42", "input")
	cost := func(f func()) uint64 {
		before := ScalarMults()
		f()
		return ScalarMults() - before
	}
	var w []byte
	var parsed *ecdh.PrivateKey
	if n := cost(func() { w, _ = Wrap(ck, pub, ctx) }); n != 2 {
		t.Errorf("Wrap: %d scalar multiplications, want 2", n)
	}
	if n := cost(func() { parsed, _ = ParsePrivateKey(priv) }); n != 1 {
		t.Errorf("ParsePrivateKey: %d, want 1", n)
	}
	if n := cost(func() { Unwrap(w, priv, ctx) }); n != 2 {
		t.Errorf("Unwrap: %d, want 2", n)
	}
	var got []byte
	var err error
	if n := cost(func() { got, err = UnwrapWith(w, parsed, ctx) }); n != 1 || err != nil || !bytes.Equal(got, ck) {
		t.Errorf("UnwrapWith: %d scalar multiplications, %x, %v", n, got, err)
	}
	other, _ := NewPrivateKey()
	if _, err := UnwrapWith(w, other, ctx); !errors.Is(err, ErrWrongKey) {
		t.Errorf("UnwrapWith another key: %v", err)
	}
	if _, err := UnwrapWith(w, parsed, Context("43", "input")); !errors.Is(err, ErrWrongKey) {
		t.Errorf("UnwrapWith another context: %v", err)
	}
	p256, _ := ecdh.P256().GenerateKey(rand.Reader)
	for _, k := range []*ecdh.PrivateKey{nil, p256} {
		if _, err := UnwrapWith(w, k, ctx); err == nil {
			t.Errorf("UnwrapWith(%v) accepted", k)
		}
	}
}
