package main

import (
	"context"
	"log/slog"

	"kiln/certs"
	"kiln/limits"
)

// startLocalSlave runs an embedded slave (the master's --local-slots) with
// the given bundle against the master's slave address until ctx ends; the
// channel yields how it ended. It is a real slave talking mutual TLS over
// loopback, under the same sandbox as any other, so the master process
// never runs submitted code in its own context.
func startLocalSlave(ctx context.Context, b *certs.Bundle, addr string, slots int, mode string, lim limits.Policy, log *slog.Logger) <-chan error {
	ch := make(chan error, 1)
	f := slaveFlags{master: addr, slots: slots, sandbox: mode, cacheSize: "256MiB",
		loadInterval: 2e9, backoffMin: 2e8, backoffMx: 2e9, jobLimits: jobLimitFlags{policy: lim}}
	go func() { ch <- runSlave(ctx, f, b, log.With("component", "local-slave")) }()
	return ch
}
