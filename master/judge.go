package master

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"kiln/transport/wire"
)

// Judging on the master: feature negotiation, checking a Submit's language
// and options against what the slaves registered, placing test batches on
// slaves that judge them, and relaying each case's verdict.

// masterFeatures are the optional features this master speaks.
var masterFeatures = []string{wire.FeatureTests, wire.FeatureInline, wire.FeatureSubmitWraps, wire.FeatureQuiet}

// negotiate returns the features of a Hello that the master speaks too,
// for Welcome.Features.
func negotiate(hello []string) []string {
	var out []string
	for _, f := range masterFeatures {
		if slices.Contains(hello, f) {
			out = append(out, f)
		}
	}
	return out
}

// checkTests refuses a test batch from a session that did not negotiate
// the feature, or one with an impossible count.
func checkTests(cc *clientConn, sub *wire.Submit) *wire.Error {
	switch {
	case sub.Tests == 0:
		return nil
	case !wire.HasFeature(cc.hello.Features, wire.FeatureTests):
		return &wire.Error{Code: wire.CodeBadRequest, Message: "test batches need the \"tests\" feature in Hello"}
	case sub.Tests < 0 || sub.Tests > wire.MaxTests:
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf("%d tests; a batch holds 1 to %d", sub.Tests, wire.MaxTests)}
	case sub.StdinSize == 0:
		return &wire.Error{Code: wire.CodeBadRequest, Message: "a test batch without its tests file"}
	}
	return nil
}

// checkLanguage checks a Submit's language, file extension and compiler
// options against the toolchains the registered slaves announced. A
// language no slave runs passes here: the job is then refused with
// no_slave, saying so. Slaves from before languages as configuration
// announce no extensions; their built-in languages are checked by
// wire.LanguageOf.
func (s *Server) checkLanguage(sub wire.Submit) *wire.Error {
	bad := func(format string, args ...any) *wire.Error {
		return &wire.Error{Code: wire.CodeBadRequest, Message: fmt.Sprintf(format, args...)}
	}
	if sub.Language == "" || len(sub.Options) > wire.MaxOptions {
		return bad("no language, or too many options")
	}
	tcs := s.toolchainsOf(sub.Language)
	ext := strings.ToLower(filepath.Ext(sub.FileName))
	var exts, opts []string
	legacy := false
	for _, t := range tcs {
		if len(t.Extensions) == 0 {
			legacy = true
		}
		for _, e := range t.Extensions {
			exts = append(exts, strings.ToLower(e))
		}
		opts = append(opts, t.Options...)
	}
	okExt := slices.Contains(exts, ext) || (legacy || len(tcs) == 0) && wire.LanguageOf(sub.FileName) == sub.Language
	if !okExt && (len(tcs) > 0 || wire.LanguageOf(sub.FileName) != "") {
		return bad("file %q is not a %s source (%s)", truncate(sub.FileName, 100), truncate(sub.Language, 20), strings.Join(slices.Compact(slices.Sorted(slices.Values(exts))), ", "))
	}
	for _, o := range sub.Options {
		if !slices.Contains(opts, o) {
			return bad("compiler option %q is not allowed for %s (allowed: %s)", truncate(o, 60), truncate(sub.Language, 20), strings.Join(slices.Compact(slices.Sorted(slices.Values(opts))), " "))
		}
	}
	return nil
}

// toolchainsOf returns the distinct toolchains registered slaves announced
// for lang. Slaves of one fleet announce the same few: keeping one of each
// keeps a Submit's check short however many slaves there are.
func (s *Server) toolchainsOf(lang string) []wire.Toolchain {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index.toolchains(lang)
}

// fitting keeps the candidates that can run sub as asked: a slave that
// judges test batches for a batch, and one whose toolchain allows every
// compiler option of the Submit (slaves of one language may be configured
// differently).
func fitting(cands []*candidate, sub wire.Submit) []*candidate {
	if sub.Tests > 0 {
		cands = judging(cands)
	}
	if len(sub.Options) == 0 {
		return cands
	}
	var out []*candidate
	for _, c := range cands {
		if c.slave != nil && allows(c.slave.reg.Toolchains, sub.Language, sub.Options) {
			out = append(out, c)
		}
	}
	return out
}

// unfitting says why no candidate among cands that runs sub's language
// can run it as asked (see fitting), or "".
func unfitting(cands []*candidate, sub wire.Submit) string {
	lang := sub.Language
	if !supports(cands, lang, "") || supports(fitting(cands, sub), lang, "") {
		return ""
	}
	if sub.Tests > 0 && !supports(judging(cands), lang, "") {
		return fmt.Sprintf("no connected slave that runs %s judges test batches (upgrade the slaves)", lang)
	}
	return fmt.Sprintf("no connected slave that runs %s allows the compiler options %s together", lang, strings.Join(sub.Options, " "))
}

// allows reports whether the toolchain of lang among tcs allows opts.
func allows(tcs []wire.Toolchain, lang string, opts []string) bool {
	for _, t := range tcs {
		if t.Language == lang {
			for _, o := range opts {
				if !slices.Contains(t.Options, o) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// sameToolchain reports whether a and b announce the same extensions and
// options (all checkLanguage reads).
func sameToolchain(a, b wire.Toolchain) bool {
	return slices.Equal(a.Extensions, b.Extensions) && slices.Equal(a.Options, b.Options)
}

// judging keeps the candidates whose slave judges test batches.
func judging(cands []*candidate) []*candidate {
	var out []*candidate
	for _, c := range cands {
		if c.slave != nil && wire.HasFeature(c.slave.hello.Features, wire.FeatureTests) {
			out = append(out, c)
		}
	}
	return out
}

// testResult relays one case's verdict to the job's client, counted
// against the job's output like an Output message.
func (s *Server) testResult(sc *slaveConn, env wire.Envelope) error {
	var tr wire.TestResult
	if err := wire.Decode(env, &tr); err != nil {
		return err
	}
	o := wire.Output{JobID: tr.JobID, Attempt: tr.Attempt, Data: tr.Data, Key: tr.Key}
	c, over := sc.routeVerdict(&o)
	if over {
		s.outputOver(sc, tr.JobID, tr.Attempt)
	}
	if c != nil {
		s.cfg.Metrics.bytes("output", len(tr.Data))
		c.send(wire.MsgTestResult, 0, tr)
	}
	return nil
}

// languageOrder lists the languages of byLang: the built-in ones in
// their usual order, then the others by name.
func languageOrder[T any](byLang map[string]T) []string {
	var out, rest []string
	for _, l := range wire.Languages() {
		if _, ok := byLang[l]; ok {
			out = append(out, l)
		}
	}
	for l := range byLang {
		if !slices.Contains(wire.Languages(), l) {
			rest = append(rest, l)
		}
	}
	slices.SortFunc(rest, cmp.Compare)
	return append(out, rest...)
}

// attemptDeadline is how long after its assignment an attempt of sub must
// be answered (JobBudget.jobDeadline of deadlineTimeMs). A test batch
// gets a second JobCompileTime: a checker's batch builds the program and
// then the checker, each within the slave's compile limit, and the master
// cannot tell (the spec may be sealed); with one an honest slave missed
// the deadline and was struck (TestBatchDeadlineCoversTwoBuilds).
func (b JobBudget) attemptDeadline(sub wire.Submit) time.Duration {
	d := b.jobDeadline(deadlineTimeMs(sub))
	if sub.Tests > 0 {
		d += b.JobCompileTime
	}
	return d
}

// deadlineTimeMs is the run time a job's deadline allows (see
// JobBudget.jobDeadline): its time limit, or for a test batch every case
// run one after the other with its checker, at most three times the time
// limit plus a second each (a checker gets twice the case's time, at least
// 1 s; docs/client.md).
func deadlineTimeMs(sub wire.Submit) int64 {
	t := sub.Limits.TimeMs
	if sub.Tests <= 0 || t <= 0 {
		return t
	}
	return int64(min(sub.Tests, wire.MaxTests)) * (3*t + 1000)
}
