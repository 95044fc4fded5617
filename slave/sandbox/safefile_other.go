//go:build !unix

package sandbox

import (
	"errors"
	"os"
)

// ErrUnsafeFile is returned by the safe file helpers for a name that is a
// symbolic link, a FIFO, a device or that would leave the directory.
var ErrUnsafeFile = errors.New("sandbox: refusing unsafe file")

// ErrTooLarge is returned by ReadFileSafe for a file larger than its cap.
var ErrTooLarge = errors.New("sandbox: file too large")

// OpenNoFollow is unsupported on this system.
func OpenNoFollow(dir, name string) (*os.File, error) { return nil, ErrUnsupported }

// ReadFileSafe is unsupported on this system.
func ReadFileSafe(dir, name string, max int64) ([]byte, error) { return nil, ErrUnsupported }

// WriteFileSafe is unsupported on this system.
func WriteFileSafe(dir, name string, data []byte, perm os.FileMode) error { return ErrUnsupported }
