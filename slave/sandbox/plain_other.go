//go:build !linux

package sandbox

import "context"

// Run reports ErrUnsupported: Plain needs Linux (prlimit, /proc).
func (p *Plain) Run(ctx context.Context, spec Spec) (Outcome, error) {
	return Outcome{}, ErrUnsupported
}
