package slave

import (
	"crypto/ecdh"
	"errors"
	"fmt"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// errSealedAuth is the detail of a sealed job whose key or payloads do not
// authenticate: nothing of it runs.
var errSealedAuth = errors.New("sealed payload failed authentication")

// openInputs recovers the content key of a sealed job and opens its source
// and stdin. Every failure wraps errSealedAuth; key is set once the
// content key unwrapped, even when a payload then fails.
func (s *Slave) openInputs(a wire.Assign, f files) (key, src, stdin []byte, err error) {
	if s.sealPriv == nil {
		return nil, nil, nil, fmt.Errorf("%w: this slave has no sealing key", errSealedAuth)
	}
	if !f.sealed {
		return nil, nil, nil, fmt.Errorf("%w: the job's files are not sealed", errSealedAuth)
	}
	// The client wrapped the key for this slave either in its Submit,
	// bound to a nonce of its own (the master names the nonce), or when
	// the master asked, bound to the job id.
	context := seal.InputContext(a.JobID)
	if len(a.WrapNonce) > 0 {
		context = seal.SubmitInputContext(a.WrapNonce)
	}
	key, err = seal.UnwrapWith(a.WrappedKey, s.sealPriv, context)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: content key: %w", errSealedAuth, err)
	}
	if src, err = seal.Open(key, seal.LabelSource, f.source); err != nil {
		return key, nil, nil, fmt.Errorf("%w: source: %w", errSealedAuth, err)
	}
	if a.StdinSize > 0 && a.Tests == 0 { // a batch's tests are sealed field by field (openBatch)
		if stdin, err = seal.Open(key, seal.LabelStdin, f.stdin); err != nil {
			return key, nil, nil, fmt.Errorf("%w: stdin: %w", errSealedAuth, err)
		}
	}
	return key, src, stdin, nil
}

// output sends one attempt's output as Output messages of at most
// outputChunk bytes. For a sealed job, once [output.seal] set the keys,
// each stream is a seal.Sequence under a fresh output key wrapped for the
// client, and [output.finish] ends both sequences. It is not safe for
// concurrent use; the executor never calls emit concurrently.
type output struct {
	k   *keeper
	j   *kept
	a   wire.Assign
	seq uint64 // wire sequence number, across streams

	key     []byte            // output key; nil when not sealed
	seqs    [2]*seal.Sequence // stdout, stderr
	keySent [2]bool
	// The output key's wrap for the client is made while the job starts
	// (two scalar multiplications, ~0.1 ms, off the job's path): wrapped
	// and wrapErr are set when wrapDone is closed.
	wrapDone chan struct{}
	wrapped  []byte
	wrapErr  error
}

// seal starts sealing output under a fresh key bound to contentKey, and
// wraps the key for the client in the background.
func (o *output) seal(contentKey []byte) error {
	if _, err := ecdh.X25519().NewPublicKey(o.a.ClientKey); err != nil {
		return fmt.Errorf("wrap the output key for the client: %w", err)
	}
	key := seal.NewContentKey()
	for i, label := range []string{seal.LabelStdout, seal.LabelStderr} {
		var err error
		if o.seqs[i], err = seal.NewSequence(key, label); err != nil {
			return err
		}
	}
	o.key = key
	done, context := make(chan struct{}), seal.OutputContext(contentKey, o.a.JobID, o.a.Attempt)
	o.wrapDone = done
	go func() {
		defer close(done)
		if o.wrapped, o.wrapErr = seal.Wrap(key, o.a.ClientKey, context); o.wrapErr != nil {
			o.wrapErr = fmt.Errorf("wrap the output key for the client: %w", o.wrapErr)
		}
	}()
	return nil
}

// wrappedKey waits for the output key's wrap; nil when it failed (a
// client key of low order), and then no output is sent and finish fails
// the job.
func (o *output) wrappedKey() []byte {
	<-o.wrapDone
	return o.wrapped
}

// emit sends a piece of output as it is produced.
func (o *output) emit(stream uint8, data []byte) {
	for len(data) > 0 {
		n := min(len(data), outputChunk)
		if !o.send(stream, data[:n], false) {
			return
		}
		data = data[n:]
	}
}

// send sends one Output message through the keeper; it reports whether
// the job is still wanted.
func (o *output) send(stream uint8, data []byte, last bool) bool {
	m := wire.Output{JobID: o.a.JobID, Attempt: o.a.Attempt, Stream: stream, Seq: o.seq, Data: data}
	if o.key != nil {
		i := int(stream) - wire.StreamStdout
		if i < 0 || i >= len(o.seqs) {
			return true // only stdout and stderr are streamed
		}
		if o.wrappedKey() == nil {
			return true // see finish
		}
		m.Data = o.seqs[i].SealNext(data, last)
		if !o.keySent[i] {
			m.Key, o.keySent[i] = o.wrapped, true
		}
	}
	o.seq++
	return o.k.output(o.j, m)
}

// finish ends a sealed attempt's output before its Result: a last
// (empty) message for each stream, the compiler output sealed, and the
// wrapped output key in the Result.
func (o *output) finish(res *wire.Result) {
	if o.key == nil {
		return
	}
	if o.wrappedKey() == nil {
		*res = wire.Result{Language: res.Language, Status: wire.StatusInternalError, Detail: o.wrapErr.Error()}
		return
	}
	o.send(wire.StreamStdout, nil, true)
	o.send(wire.StreamStderr, nil, true)
	sealed, err := seal.Seal(o.key, seal.LabelCompile, res.CompileOutput)
	if err != nil {
		sealed = nil
	}
	verdict, err := seal.Seal(o.key, seal.LabelResult, res.VerdictBytes())
	if err != nil {
		verdict = nil
	}
	res.CompileOutput, res.Key, res.Verdict = sealed, o.wrapped, verdict
}
