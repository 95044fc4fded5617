//go:build !linux

package sandbox

import "context"

// Strict is the namespace sandbox; it exists only on Linux.
type Strict struct{}

// NewStrict returns ErrUnsupported: strict sandboxes need Linux.
func NewStrict(cfg StrictConfig) (*Strict, error) { return nil, ErrUnsupported }

// Name returns "strict".
func (s *Strict) Name() string { return "strict" }

// Run returns ErrUnsupported.
func (s *Strict) Run(ctx context.Context, spec Spec) (Outcome, error) {
	return Outcome{}, ErrUnsupported
}

// Check returns ErrUnsupported.
func (s *Strict) Check(ctx context.Context) (Capabilities, error) {
	return Capabilities{}, ErrUnsupported
}

// Warm returns ErrUnsupported.
func (s *Strict) Warm(n int) error { return ErrUnsupported }

// Close does nothing.
func (s *Strict) Close() error { return nil }

// Main returns false: there is no sandbox init outside Linux.
func Main() bool { return false }
