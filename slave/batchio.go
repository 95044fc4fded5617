package slave

import (
	"context"
	"fmt"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// openBatch decodes a batch's bundle (the job's stdin file) and, in a
// sealed job (key set), opens every field under the label of its case: a
// case moved to another index, dropped (the sealed spec counts them) or
// taken from another job fails, and nothing of the job runs. n is the
// number of cases the Assign announced.
func openBatch(data, key []byte, n int) (Batch, error) {
	var b wire.TestBundle
	if err := wire.DecodeValue(data, &b); err != nil {
		return Batch{}, fmt.Errorf("tests: %w", err)
	}
	if len(b.Cases) != n {
		return Batch{}, fmt.Errorf("tests: %d cases, the job announced %d", len(b.Cases), n)
	}
	open := func(label string, p []byte) ([]byte, error) {
		if key == nil {
			return p, nil
		}
		out, err := seal.Open(key, label, p)
		if err != nil {
			return nil, fmt.Errorf("%w: tests: %s: %w", errSealedAuth, label, err)
		}
		return out, nil
	}
	specBytes, err := open(wire.LabelTestSpec, b.Spec)
	if err != nil {
		return Batch{}, err
	}
	var out Batch
	if err := wire.DecodeValue(specBytes, &out.Spec); err != nil {
		return Batch{}, fmt.Errorf("tests: spec: %w", err)
	}
	if err := out.Spec.Check(); err != nil {
		return Batch{}, fmt.Errorf("tests: %w", err)
	}
	if out.Spec.Count != n {
		return Batch{}, fmt.Errorf("%w: tests: the spec counts %d cases, the bundle holds %d", errSealedAuth, out.Spec.Count, n)
	}
	if out.Spec.Compare == wire.CompareChecker {
		if out.Checker, err = open(wire.LabelChecker, b.Checker); err != nil {
			return Batch{}, err
		}
	}
	out.Cases = make([]wire.TestCase, n)
	for i, c := range b.Cases {
		if out.Cases[i].Stdin, err = open(wire.TestLabel("stdin", i), c.Stdin); err != nil {
			return Batch{}, err
		}
		if out.Cases[i].Expected, err = open(wire.TestLabel("expected", i), c.Expected); err != nil {
			return Batch{}, err
		}
	}
	return out, nil
}

// runBatch opens a batch and runs it on the free slots of the slave (the
// job holds one already; the others are borrowed one case at a time, so
// a job assigned meanwhile gets the next one given back), sending each
// verdict as a TestResult.
func (c *conn) runBatch(ctx context.Context, job Job, bundle, key []byte, out *output) wire.Result {
	res := wire.Result{Language: job.Language}
	b, err := openBatch(bundle, key, out.a.Tests)
	if err != nil {
		c.log.Warn("test batch refused", "job", job.ID, "err", err)
		return fail(res, wire.StatusInternalError, err.Error())
	}
	borrow := func() (func(), bool) {
		if !c.takeSlot() {
			return nil, false
		}
		return func() { <-c.s.slots; c.s.running.Add(-1) }, true
	}
	return c.s.cfg.Executor.ExecuteTestsBorrowing(ctx, job, b, cap(c.s.slots), borrow, out.verdict)
}

// takeSlot takes a free slot of the slave without waiting.
func (c *conn) takeSlot() bool {
	select {
	case c.s.slots <- struct{}{}:
		c.s.running.Add(1)
		return true
	default:
		return false
	}
}

// verdict sends one case's verdict, sealed under the attempt's output key
// with the label of its index in a sealed job.
func (o *output) verdict(v wire.TestVerdict) {
	data := wire.EncodeValue(&v)
	var key []byte
	if o.key != nil {
		if key = o.wrappedKey(); key == nil {
			return // see finish
		}
		var err error
		if data, err = seal.Seal(o.key, wire.TestLabel("verdict", v.Index), data); err != nil {
			o.k.log.Warn("verdict not sealed", "job", o.a.JobID, "err", err)
			return
		}
	}
	o.k.testResult(o.j, wire.TestResult{JobID: o.a.JobID, Attempt: o.a.Attempt, Index: v.Index, Data: data, Key: key})
}

// testResult sends a verdict on the current session. Unlike Output it is
// not kept for replay: a batch whose session is lost mid-run reaches its
// client without the verdicts sent meanwhile, which a sealed client
// reports (docs/client.md).
func (k *keeper) testResult(j *kept, m wire.TestResult) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if j.abandoned || k.sess == nil {
		return
	}
	if err := k.sess.Send(wire.MsgTestResult, 0, &m); err != nil {
		k.log.Debug("verdict not sent", "job", m.JobID, "err", err)
	}
}
