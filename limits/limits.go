// Package limits owns the bounds of one job: the limits a job gets when it
// asks for none (its defaults) and the most it may ask for (its maxima),
// for the whole cluster and per language. The master applies a [Policy] at
// admission, so the limits a job runs under are fixed before it is queued
// and are what listings show; slaves enforce what they are assigned, up to
// a ceiling of their own (a [Policy]'s maxima too).
//
// The built-in policy ([Builtin]) is documented in docs/operations.md;
// `kiln master` sets a policy from its flags or configuration file.
package limits

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"kiln/transport/wire"
)

// Built-in defaults and maxima, used where a Policy leaves a field zero.
const (
	DefaultTime   = 5 * time.Second
	DefaultMemory = 256 << 20
	DefaultOutput = 1 << 20
	MaxTime       = 60 * time.Second
	MaxMemory     = 2 << 30
	MaxOutput     = 16 << 20 // also the master's default cap on relayed output
)

// Bounds are the defaults and the maxima of a job's limits. A zero field
// of Default or Max is inherited (from the cluster-wide bounds for a
// language, from the built-in ones for the cluster).
type Bounds struct {
	Default wire.JobLimits
	Max     wire.JobLimits
}

// Policy is the cluster's bounds, with overrides per language. The zero
// Policy is the built-in one. Policy values are read-only once in use and
// safe for concurrent use.
type Policy struct {
	Bounds
	// Languages holds per-language overrides, by wire language name
	// (c, cpp, java, python); their zero fields take the cluster's.
	Languages map[string]Bounds
}

// Builtin returns the built-in bounds: by default 5 s, 256 MiB and 1 MiB
// of output; at most 60 s, 2 GiB and 16 MiB.
func Builtin() Bounds {
	return Bounds{
		Default: wire.JobLimits{TimeMs: DefaultTime.Milliseconds(), MemoryBytes: DefaultMemory, OutputBytes: DefaultOutput},
		Max:     wire.JobLimits{TimeMs: MaxTime.Milliseconds(), MemoryBytes: MaxMemory, OutputBytes: MaxOutput},
	}
}

// fill returns l with its zero fields taken from def.
func fill(l, def wire.JobLimits) wire.JobLimits {
	if l.TimeMs == 0 {
		l.TimeMs = def.TimeMs
	}
	if l.MemoryBytes == 0 {
		l.MemoryBytes = def.MemoryBytes
	}
	if l.OutputBytes == 0 {
		l.OutputBytes = def.OutputBytes
	}
	return l
}

// For returns the complete bounds of lang: its overrides, then the
// cluster's, then the built-in ones. A default above its maximum (which
// [Policy.Check] refuses) is lowered to it.
func (p Policy) For(lang string) Bounds {
	b := Builtin()
	cl := Bounds{Default: fill(p.Default, b.Default), Max: fill(p.Max, b.Max)}
	lb := p.Languages[lang]
	out := Bounds{Default: fill(lb.Default, cl.Default), Max: fill(lb.Max, cl.Max)}
	out.Default.TimeMs = min(out.Default.TimeMs, out.Max.TimeMs)
	out.Default.MemoryBytes = min(out.Default.MemoryBytes, out.Max.MemoryBytes)
	out.Default.OutputBytes = min(out.Default.OutputBytes, out.Max.OutputBytes)
	return out
}

// OverError is a job asking for more than a maximum. Its message names the
// maximum and how to stay under it.
type OverError struct {
	Lang  string
	Field string // "time", "memory" or "output"
	Asked int64  // milliseconds or bytes
	Max   int64
}

func (e *OverError) Error() string {
	return fmt.Sprintf("%s limit %s is over the maximum of %s for %s; ask for at most that",
		e.Field, Format(e.Field, e.Asked), Format(e.Field, e.Max), e.Lang)
}

// Apply returns the limits a job of lang asking for asked runs under: its
// zero fields take the defaults. A field over its maximum is refused with
// an *OverError, never lowered; a negative field is an error too.
func (p Policy) Apply(lang string, asked wire.JobLimits) (wire.JobLimits, error) {
	b := p.For(lang)
	for _, f := range fields(asked, b.Max) {
		if f.asked < 0 {
			return wire.JobLimits{}, fmt.Errorf("%s limit %d is negative", f.name, f.asked)
		}
		if f.asked > f.max {
			return wire.JobLimits{}, &OverError{Lang: lang, Field: f.name, Asked: f.asked, Max: f.max}
		}
	}
	return fill(asked, b.Default), nil
}

type field struct {
	name       string
	asked, max int64
}

func fields(l, m wire.JobLimits) []field {
	return []field{{"time", l.TimeMs, m.TimeMs}, {"memory", l.MemoryBytes, m.MemoryBytes}, {"output", l.OutputBytes, m.OutputBytes}}
}

// Check reports a policy that cannot work: a negative field, or a default
// over its maximum (for the cluster or a language).
func (p Policy) Check() error {
	for _, lang := range append([]string{""}, p.langs()...) {
		b := p.For(lang)
		raw := p.Bounds
		where := "the cluster"
		if lang != "" {
			raw, where = p.Languages[lang], lang
			if !slices.Contains(wire.Languages(), lang) {
				return fmt.Errorf("limits for %q: not a language (want %s)", lang, strings.Join(wire.Languages(), ", "))
			}
		}
		for _, f := range append(fields(raw.Default, raw.Max), fields(raw.Max, raw.Max)...) {
			if f.asked < 0 {
				return fmt.Errorf("%s: %s limit %d is negative", where, f.name, f.asked)
			}
		}
		// Only a default set here can be wrong: an inherited one is
		// lowered to the maximum (see For).
		for _, f := range fields(raw.Default, b.Max) {
			if f.asked > f.max {
				return fmt.Errorf("%s: default %s limit %s is over its maximum %s", where, f.name,
					Format(f.name, f.asked), Format(f.name, f.max))
			}
		}
	}
	return nil
}

// langs returns the languages with overrides, sorted.
func (p Policy) langs() []string {
	var out []string
	for l := range p.Languages {
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// Ceiling returns l lowered to the policy's maxima for lang, and whether
// anything was lowered. Slaves use it as their own ceiling on what a
// master assigns.
func (p Policy) Ceiling(lang string, l wire.JobLimits) (wire.JobLimits, bool) {
	m := p.For(lang).Max
	out := wire.JobLimits{TimeMs: min(l.TimeMs, m.TimeMs), MemoryBytes: min(l.MemoryBytes, m.MemoryBytes),
		OutputBytes: min(l.OutputBytes, m.OutputBytes)}
	return out, out != l
}

// Format renders a limit for people: a duration for "time" (milliseconds),
// a binary size otherwise (bytes).
func Format(field string, v int64) string {
	if field == "time" {
		return (time.Duration(v) * time.Millisecond).String()
	}
	return FormatSize(v)
}

// String renders limits as "time 5s, memory 256MiB, output 1MiB".
func String(l wire.JobLimits) string {
	return fmt.Sprintf("time %s, memory %s, output %s", Format("time", l.TimeMs), FormatSize(l.MemoryBytes), FormatSize(l.OutputBytes))
}

// FormatSize renders n bytes with a binary unit, e.g. "256MiB" or "1.5KiB".
func FormatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	s := fmt.Sprintf("%.1f", f)
	return strings.TrimSuffix(s, ".0") + units[i]
}

// sizeUnits maps the suffixes parseSize accepts to their multipliers. Binary
// (KiB, MiB, GiB) and the short forms (k, m, g) are powers of 1024; decimal
// (KB, MB, GB) are powers of 1000.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

// ParseSize parses a byte size such as "256MiB", "1GiB", "512k", "1.5m" or
// "4096" (bytes). Suffixes are case-insensitive.
func ParseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid size %q (want e.g. 256MiB, 1GiB, 512k)", s)
	}
	v := f * float64(mult)
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v), nil
}
