package seal

import (
	"crypto/cipher"
	"fmt"
)

// Sequence seals a payload that travels as separate messages, such as
// streamed output: each call to SealNext returns one message, which opens
// only in its place in the sequence (see the Format section). A Sequence is
// not safe for concurrent use.
type Sequence struct {
	aead cipher.AEAD
	hdr  []byte // header for message 0; nil once sent
	i    uint64 // index of the next message
	done bool   // the last message was sealed
}

// NewSequence returns a Sequence that seals messages under the content key
// and label. Each Sequence draws its own salt, so one key and label may seal
// several sequences, for example one per attempt of a job.
func NewSequence(key []byte, label string) (*Sequence, error) {
	if err := checkParams(key, label); err != nil {
		return nil, err
	}
	return newSequence(key, label, randomSalt()), nil
}

// newSequence is NewSequence with a given salt.
func newSequence(key []byte, label string, salt []byte) *Sequence {
	hdr, aead := newHeader(key, label, kindSequence, salt)
	return &Sequence{aead: aead, hdr: hdr}
}

// SealNext seals p as the next message; last marks the final one. The first
// message is HeaderSize+len(p)+Overhead bytes, the others len(p)+Overhead.
// Calling SealNext after the last message is a programming error and panics.
func (s *Sequence) SealNext(p []byte, last bool) []byte {
	if s.done {
		panic("seal: SealNext after the last message")
	}
	var nonce [nonceSize]byte
	setNonce(&nonce, s.i, last)
	out := make([]byte, 0, len(s.hdr)+len(p)+Overhead)
	out = append(out, s.hdr...)
	out = s.aead.Seal(out, nonce[:], p, nil)
	s.hdr = nil
	s.i++
	s.done = last
	return out
}

// SequenceOpener opens the messages of a Sequence, in order, each exactly
// once. A SequenceOpener is not safe for concurrent use.
type SequenceOpener struct {
	key   []byte // until message 0 arrives
	label string
	aead  cipher.AEAD
	i     uint64 // index of the next message
	done  bool   // the last message was opened
	err   error  // sticky
}

// NewSequenceOpener returns a SequenceOpener for messages sealed under the
// content key and label.
func NewSequenceOpener(key []byte, label string) (*SequenceOpener, error) {
	if err := checkParams(key, label); err != nil {
		return nil, err
	}
	return &SequenceOpener{key: append([]byte(nil), key...), label: label}, nil
}

// OpenNext authenticates c as the next message of the sequence and returns
// its plaintext and whether it is the last message. A message that is not
// the next one (repeated, reordered, one missing before it, from another
// sequence) or that comes after the last fails with ErrTampered, or
// ErrWrongKey for a first message under another key or label. After an
// error every call fails with the same error.
func (o *SequenceOpener) OpenNext(c []byte) (p []byte, last bool, err error) {
	if o.err != nil {
		return nil, false, o.err
	}
	p, last, err = o.open(c)
	if err != nil {
		o.err = err
		return nil, false, err
	}
	o.i++
	o.done = last
	return p, last, nil
}

// open authenticates one message.
func (o *SequenceOpener) open(c []byte) ([]byte, bool, error) {
	if o.done {
		return nil, false, fmt.Errorf("%w: message %d after the last message", ErrTampered, o.i)
	}
	if o.aead == nil {
		if len(c) < HeaderSize {
			return nil, false, fmt.Errorf("%w: first message of %d bytes is shorter than its header", ErrTampered, len(c))
		}
		aead, err := parseHeader(o.key, o.label, kindSequence, c[:HeaderSize])
		if err != nil {
			return nil, false, err
		}
		o.aead, o.key, c = aead, nil, c[HeaderSize:]
	}
	if len(c) < Overhead {
		return nil, false, fmt.Errorf("%w: message %d of %d bytes is shorter than a tag", ErrTampered, o.i, len(c))
	}
	var nonce [nonceSize]byte
	for _, last := range []bool{false, true} {
		setNonce(&nonce, o.i, last)
		if p, err := o.aead.Open(nil, nonce[:], c, nil); err == nil {
			return p, last, nil
		}
	}
	return nil, false, fmt.Errorf("%w: message %d does not authenticate (altered, repeated, reordered, one before it missing, or from another sequence)", ErrTampered, o.i)
}

// Finish reports whether the sequence ended properly: it returns the
// sticky error if any, ErrTruncated if the last message never arrived, and
// nil otherwise. Call it when the carrier of the messages ends.
func (o *SequenceOpener) Finish() error {
	if o.err != nil {
		return o.err
	}
	if !o.done {
		return fmt.Errorf("%w: sequence ended after %d messages without its last message", ErrTruncated, o.i)
	}
	return nil
}
