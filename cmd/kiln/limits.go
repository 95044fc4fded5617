package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"kiln/limits"
	"kiln/transport/wire"
)

// jobLimitFlags are the master's flags for job limits: cluster-wide
// defaults and maxima, and overrides per language.
type jobLimitFlags struct {
	policy limits.Policy
}

func (f *jobLimitFlags) register(fs *flag.FlagSet) {
	b := limits.Builtin()
	p := &f.policy
	f.registerMax(fs, "job may ask for", "more is refused")
	fs.Var((*msFlag)(&p.Default.TimeMs), "default-time", fmt.Sprintf("time limit of a job that asks for none (`DURATION`; built in: %s)", limits.Format("time", b.Default.TimeMs)))
	fs.Var((*bytesFlag)(&p.Default.MemoryBytes), "default-memory", fmt.Sprintf("memory limit of a job that asks for none (`SIZE`; built in: %s)", limits.FormatSize(b.Default.MemoryBytes)))
	fs.Var((*bytesFlag)(&p.Default.OutputBytes), "default-output", fmt.Sprintf("output limit of a job that asks for none (`SIZE`; built in: %s)", limits.FormatSize(b.Default.OutputBytes)))
	fs.Var((*langLimitsFlag)(p), "language-limits", "per-language `LANG:KEY=VALUE,...` overriding the six limit flags for one language,\ne.g. java:default-memory=1GiB,max-time=2m (repeatable)")
}

// registerMax registers the three maxima: for a master, what a job may ask
// for; for a slave, what it accepts from its master.
func (f *jobLimitFlags) registerMax(fs *flag.FlagSet, what, past string) {
	b := limits.Builtin()
	p := &f.policy
	fs.Var((*msFlag)(&p.Max.TimeMs), "max-time", fmt.Sprintf("most time a %s (`DURATION`; built in: %s); %s", what, limits.Format("time", b.Max.TimeMs), past))
	fs.Var((*bytesFlag)(&p.Max.MemoryBytes), "max-memory", fmt.Sprintf("most memory a %s (`SIZE`; built in: %s); %s", what, limits.FormatSize(b.Max.MemoryBytes), past))
	fs.Var((*bytesFlag)(&p.Max.OutputBytes), "max-output", fmt.Sprintf("most output a %s (`SIZE`; built in: %s); %s", what, limits.FormatSize(b.Max.OutputBytes), past))
}

// msFlag is a duration flag stored in milliseconds.
type msFlag int64

func (f *msFlag) String() string {
	if f == nil || *f == 0 {
		return ""
	}
	return limits.Format("time", int64(*f))
}

func (f *msFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return fmt.Errorf("want a positive duration such as 5s or 2m")
	}
	*f = msFlag(d.Milliseconds())
	return nil
}

// bytesFlag is a size flag stored in bytes.
type bytesFlag int64

func (f *bytesFlag) String() string {
	if f == nil || *f == 0 {
		return ""
	}
	return limits.FormatSize(int64(*f))
}

func (f *bytesFlag) Set(s string) error {
	v, err := parseSize(s)
	if err == nil && v <= 0 {
		err = fmt.Errorf("want a positive size")
	}
	*f = bytesFlag(v)
	return err
}

// langLimitsFlag adds one language's overrides to a policy.
type langLimitsFlag limits.Policy

func (f *langLimitsFlag) String() string { return "" }

func (f *langLimitsFlag) Set(s string) error {
	lang, spec, ok := strings.Cut(s, ":")
	if !ok || !slices.Contains(wire.Languages(), lang) {
		return fmt.Errorf("%q: want LANG:KEY=VALUE,... with LANG one of %s", s, strings.Join(wire.Languages(), ", "))
	}
	if f.Languages == nil {
		f.Languages = map[string]limits.Bounds{}
	}
	b := f.Languages[lang]
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "default-time":
			err = (*msFlag)(&b.Default.TimeMs).Set(v)
		case "max-time":
			err = (*msFlag)(&b.Max.TimeMs).Set(v)
		case "default-memory":
			err = (*bytesFlag)(&b.Default.MemoryBytes).Set(v)
		case "max-memory":
			err = (*bytesFlag)(&b.Max.MemoryBytes).Set(v)
		case "default-output":
			err = (*bytesFlag)(&b.Default.OutputBytes).Set(v)
		case "max-output":
			err = (*bytesFlag)(&b.Max.OutputBytes).Set(v)
		default:
			return fmt.Errorf("%q: unknown key %q (want default-time, max-time, default-memory, max-memory, default-output or max-output)", s, k)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", lang, k, err)
		}
	}
	f.Languages[lang] = b
	return nil
}
