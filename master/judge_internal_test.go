package master

import (
	"testing"

	"kiln/transport/wire"
)

// A batch's deadline allows every case one after the other with a
// checker; a plain job's is its time limit.
func TestDeadlineTimeOfBatches(t *testing.T) {
	for _, tc := range []struct {
		sub  wire.Submit
		want int64
	}{
		{wire.Submit{Limits: wire.JobLimits{TimeMs: 2000}}, 2000},
		{wire.Submit{Tests: 50, Limits: wire.JobLimits{TimeMs: 2000}}, 50 * 7000},
		{wire.Submit{Tests: 1, Limits: wire.JobLimits{TimeMs: 100}}, 1300},
		{wire.Submit{Tests: 5}, 0},
	} {
		if got := deadlineTimeMs(tc.sub); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.sub, got, tc.want)
		}
	}
}

func TestNegotiate(t *testing.T) {
	if got := negotiate([]string{"x", wire.FeatureTests, wire.FeatureTests}); len(got) != 1 || got[0] != wire.FeatureTests {
		t.Errorf("negotiate = %v", got)
	}
	if got := negotiate(nil); got != nil {
		t.Errorf("negotiate(nil) = %v", got)
	}
}
