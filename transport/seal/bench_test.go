package seal

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

var benchSizes = []int{1 << 20, 16 << 20}

func sizeName(n int) string { return fmt.Sprintf("%dMiB", n>>20) }

func BenchmarkSeal(b *testing.B) {
	key := testKey(0)
	for _, n := range benchSizes {
		p := testData(n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := Seal(key, LabelSource, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	key := testKey(0)
	for _, n := range benchSizes {
		c, _ := Seal(key, LabelSource, testData(n))
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				if _, err := Open(key, LabelSource, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkWriter(b *testing.B) {
	key, n := testKey(0), 16<<20
	p := testData(n)
	b.SetBytes(int64(n))
	for b.Loop() {
		w, _ := NewWriter(key, LabelStdin, io.Discard)
		w.Write(p)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReader(b *testing.B) {
	key, n := testKey(0), 16<<20
	c, _ := Seal(key, LabelStdin, testData(n))
	b.SetBytes(int64(n))
	for b.Loop() {
		r, _ := NewReader(key, LabelStdin, bytes.NewReader(c))
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSequence seals and opens 4 KiB output messages.
func BenchmarkSequence(b *testing.B) {
	key, p := testKey(0), testData(4<<10)
	s, _ := NewSequence(key, LabelStdout)
	o, _ := NewSequenceOpener(key, LabelStdout)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, _, err := o.OpenNext(s.SealNext(p, false)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrap, BenchmarkUnwrap and BenchmarkUnwrapWith: a key wrap costs
// two scalar multiplications, an unwrap from the key's bytes two, an
// unwrap with a parsed key one.
func BenchmarkWrap(b *testing.B) {
	_, pub, _ := GenerateKey()
	ck, ctx := NewContentKey(), InputContext("42")
	for b.Loop() {
		if _, err := Wrap(ck, pub, ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrap(b *testing.B) {
	priv, pub, _ := GenerateKey()
	ctx := InputContext("42")
	w, _ := Wrap(NewContentKey(), pub, ctx)
	for b.Loop() {
		if _, err := Unwrap(w, priv, ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnwrapWith(b *testing.B) {
	priv, pub, _ := GenerateKey()
	k, _ := ParsePrivateKey(priv)
	ctx := InputContext("42")
	w, _ := Wrap(NewContentKey(), pub, ctx)
	for b.Loop() {
		if _, err := UnwrapWith(w, k, ctx); err != nil {
			b.Fatal(err)
		}
	}
}
