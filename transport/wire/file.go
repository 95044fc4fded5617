package wire

import (
	"crypto/sha256"
	"fmt"
)

// Check returns an error wrapping ErrMalformed unless h can open a file
// stream: Size must not be negative and SHA256 must be a SHA-256 sum.
func (h FileHeader) Check() error {
	if h.Size < 0 {
		return fmt.Errorf("%w: file header: negative size %d", ErrMalformed, h.Size)
	}
	if h.Sealed && len(h.SHA256) == 0 {
		// A sealed payload authenticates every chunk end to end (AEAD);
		// the SHA-256 is optional for it.
		return nil
	}
	if len(h.SHA256) != sha256.Size {
		return fmt.Errorf("%w: file header: sha256 is %d bytes, want %d", ErrMalformed, len(h.SHA256), sha256.Size)
	}
	return nil
}

// NewFileHeader returns the header for sending data in memory: its Size and
// SHA256 are filled from data.
func NewFileHeader(jobID, kind, name string, data []byte) FileHeader {
	sum := sha256.Sum256(data)
	return FileHeader{JobID: jobID, Kind: kind, Name: name, Size: int64(len(data)), SHA256: sum[:]}
}
