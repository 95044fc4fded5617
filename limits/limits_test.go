package limits

import (
	"errors"
	"strings"
	"testing"

	"kiln/transport/wire"
)

func TestApply(t *testing.T) {
	p := Policy{
		Bounds: Bounds{Max: wire.JobLimits{TimeMs: 30_000}},
		Languages: map[string]Bounds{"java": {
			Default: wire.JobLimits{MemoryBytes: 1 << 30},
			Max:     wire.JobLimits{TimeMs: 120_000},
		}},
	}
	cases := []struct {
		lang  string
		asked wire.JobLimits
		want  wire.JobLimits
		err   string
	}{
		{"python", wire.JobLimits{}, wire.JobLimits{TimeMs: 5000, MemoryBytes: 256 << 20, OutputBytes: 1 << 20}, ""},
		{"python", wire.JobLimits{TimeMs: 30_000}, wire.JobLimits{TimeMs: 30_000, MemoryBytes: 256 << 20, OutputBytes: 1 << 20}, ""},
		{"python", wire.JobLimits{TimeMs: 30_001}, wire.JobLimits{}, "time limit 30.001s is over the maximum of 30s for python"},
		{"python", wire.JobLimits{TimeMs: 7_200_000}, wire.JobLimits{}, "time limit 2h0m0s is over the maximum of 30s for python"},
		{"c", wire.JobLimits{MemoryBytes: 64 << 30}, wire.JobLimits{}, "memory limit 64GiB is over the maximum of 2GiB for c"},
		{"c", wire.JobLimits{OutputBytes: 17 << 20}, wire.JobLimits{}, "output limit 17MiB is over the maximum of 16MiB for c"},
		{"java", wire.JobLimits{TimeMs: 90_000}, wire.JobLimits{TimeMs: 90_000, MemoryBytes: 1 << 30, OutputBytes: 1 << 20}, ""},
		{"c", wire.JobLimits{TimeMs: -1}, wire.JobLimits{}, "negative"},
	}
	for _, tc := range cases {
		got, err := p.Apply(tc.lang, tc.asked)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Apply(%s, %+v) = %+v, %v; want error %q", tc.lang, tc.asked, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Apply(%s, %+v) = %+v, %v; want %+v", tc.lang, tc.asked, got, err, tc.want)
		}
	}
	_, err := p.Apply("c", wire.JobLimits{MemoryBytes: 3 << 30})
	var over *OverError
	if !errors.As(err, &over) || over.Field != "memory" || over.Max != 2<<30 {
		t.Errorf("want an *OverError naming the memory maximum, got %v", err)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		p   Policy
		err string
	}{
		{Policy{}, ""},
		{Policy{Bounds: Bounds{Default: wire.JobLimits{TimeMs: 61_000}}}, "the cluster: default time limit 1m1s is over its maximum 1m0s"},
		{Policy{Bounds: Bounds{Max: wire.JobLimits{TimeMs: 1000}}}, ""}, // the inherited default is lowered
		{Policy{Languages: map[string]Bounds{"c": {Default: wire.JobLimits{TimeMs: 2000}, Max: wire.JobLimits{TimeMs: 1000}}}}, "c: default time limit 2s is over its maximum 1s"},
		{Policy{Languages: map[string]Bounds{"cobol": {}}}, `"cobol": not a language`},
		{Policy{Languages: map[string]Bounds{"java": {Default: wire.JobLimits{MemoryBytes: 4 << 30}}}}, "java: default memory limit 4GiB is over its maximum 2GiB"},
		{Policy{Bounds: Bounds{Max: wire.JobLimits{OutputBytes: -5}}}, "negative"},
	} {
		err := tc.p.Check()
		if (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Check(%+v) = %v, want %q", tc.p, err, tc.err)
		}
	}
}

func TestCeiling(t *testing.T) {
	l, lowered := Policy{}.Ceiling("c", wire.JobLimits{TimeMs: 120_000, MemoryBytes: 1 << 20, OutputBytes: 1})
	if !lowered || l.TimeMs != 60_000 || l.MemoryBytes != 1<<20 {
		t.Errorf("Ceiling = %+v, %v", l, lowered)
	}
	if _, lowered := (Policy{}).Ceiling("c", wire.JobLimits{TimeMs: 1, MemoryBytes: 1, OutputBytes: 1}); lowered {
		t.Error("Ceiling lowered limits under the maxima")
	}
}

func TestString(t *testing.T) {
	if got := String(Builtin().Default); got != "time 5s, memory 256MiB, output 1MiB" {
		t.Errorf("String = %q", got)
	}
}
