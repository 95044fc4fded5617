package main

import (
	"context"
	"log/slog"

	"kiln/slave"
	"kiln/transport/wire"
)

// slaveToolchains detects the toolchains of specs and logs what was found
// and what is missing: a language the host lacks is reported, never
// announced.
func slaveToolchains(ctx context.Context, specs []slave.LanguageSpec, log *slog.Logger) []wire.Toolchain {
	tcs, missing := slave.DetectLanguages(ctx, specs)
	for _, tc := range tcs {
		log.Info("toolchain", "lang", tc.Language, "compiler", tc.Compiler, "path", tc.Path)
	}
	for _, m := range missing {
		log.Warn("language not available on this host: not announced", "lang", m.Language, "reason", m.Reason)
	}
	if len(tcs) == 0 {
		log.Warn("no toolchain found: this slave can run nothing (install gcc, g++, a JDK or python3)")
	}
	return tcs
}
