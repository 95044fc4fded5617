//go:build !linux

package sandbox

// NewPrivateDir reports ErrUnsupported: it needs Linux's new mount API.
func NewPrivateDir(size int64) (*PrivateDir, error) { return nil, ErrUnsupported }
