package client

import (
	"fmt"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// testResult records one case's verdict of the current attempt, once it
// authenticated if the job is sealed. A verdict that fails, claims an
// index it was not sealed for, or repeats an index ends the job with a
// *SealError. It reports whether the job has ended.
func (j *Job) testResult(tr wire.TestResult) bool {
	j.mu.Lock()
	if tr.Attempt != 0 && tr.Attempt < j.attempt {
		j.mu.Unlock()
		return false // a verdict of a voided attempt
	}
	v, err := j.openVerdictLocked(tr)
	if err == nil {
		if j.verdicts == nil {
			j.verdicts = map[int]wire.TestVerdict{}
		}
		j.verdicts[tr.Index] = v
	}
	j.mu.Unlock()
	if err != nil {
		j.finish(nil, &SealError{Job: j.id, Op: "test verdict", Err: err}, Event{})
		j.c.cancelOrphan(j.id)
		return true
	}
	j.push(Event{Test: &v})
	return false
}

func (j *Job) openVerdictLocked(tr wire.TestResult) (wire.TestVerdict, error) {
	var v wire.TestVerdict
	data := tr.Data
	if j.seal != nil {
		var err error
		if data, err = j.seal.openVerdict(j.id, tr); err != nil {
			return v, fmt.Errorf("test %d: %w", tr.Index, err)
		}
	}
	if err := wire.DecodeValue(data, &v); err != nil {
		return v, fmt.Errorf("test %d: %w", tr.Index, err)
	}
	switch {
	case v.Index != tr.Index:
		return v, fmt.Errorf("%w: verdict of test %d delivered as test %d", seal.ErrTampered, v.Index, tr.Index)
	case tr.Index < 0 || tr.Index >= wire.MaxTests:
		return v, fmt.Errorf("%w: test index %d", seal.ErrTampered, tr.Index)
	}
	if _, dup := j.verdicts[tr.Index]; dup {
		return v, fmt.Errorf("%w: two verdicts for test %d", seal.ErrTampered, tr.Index)
	}
	return v, nil
}

// checkTestCount checks, for a sealed batch, that every verdict the slave
// counted in its sealed summary arrived: a dropped case is refused. j.mu
// is held.
func (j *Job) checkTestCount(res wire.Result) error {
	if j.seal == nil || res.Tests == nil {
		return nil
	}
	if got := len(j.verdicts); got != res.Tests.Ran {
		return fmt.Errorf("test verdicts: %w: %d arrived, the slave judged %d", seal.ErrTampered, got, res.Tests.Ran)
	}
	return nil
}

// testOutcome lists the verdicts by index, with skipped entries for the
// cases never judged. j.mu is held.
func (j *Job) testOutcome() []wire.TestVerdict {
	if j.result == nil || j.result.Tests == nil {
		return nil
	}
	n := min(max(j.result.Tests.Total, 0), wire.MaxTests)
	out := make([]wire.TestVerdict, n)
	for i := range out {
		v, ok := j.verdicts[i]
		if !ok {
			v = wire.TestVerdict{Index: i, Status: wire.TestSkipped}
		}
		out[i] = v
	}
	return out
}
