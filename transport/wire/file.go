package wire

import (
	"bytes"
	"crypto/sha256"
	"errors"
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

// MaxInline is the most bytes of files one [Submit] or [Assign] carries
// inline ([Inline]), source and stdin together: files up to it save a
// file stream each (open, header, data, close and window updates), and
// larger ones go on streams. It is well under [MaxFrame], so that an
// inline message never crowds the control stream.
const MaxInline = 64 << 10

// ErrInline reports inline files that do not match their message: a size
// that differs from the announced one, or a missing or wrong SHA-256.
var ErrInline = errors.New("inline file does not match its message")

// CheckInline checks the inline files of a Submit or Assign against the
// sizes it announces: a file that is inline must have exactly its
// announced size and, unless sealed, a SHA-256 sum that matches (a sealed
// file may leave it empty: its AEAD authenticates it). Its errors wrap
// [ErrInline].
func CheckInline(in Inline, sourceSize, stdinSize int64, sealed bool) error {
	if err := checkInlineFile(FileSource, in.Source, in.SourceSHA256, sourceSize, sealed); err != nil {
		return err
	}
	return checkInlineFile(FileStdin, in.Stdin, in.StdinSHA256, stdinSize, sealed)
}

func checkInlineFile(kind string, data, sum []byte, size int64, sealed bool) error {
	switch {
	case len(data) == 0:
		return nil
	case int64(len(data)) != size:
		return fmt.Errorf("%w: inline %s of %d bytes, %d announced", ErrInline, kind, len(data), size)
	case sealed && len(sum) == 0:
		return nil
	case len(sum) != sha256.Size:
		return fmt.Errorf("%w: inline %s: sha256 is %d bytes, want %d", ErrInline, kind, len(sum), sha256.Size)
	}
	if got := sha256.Sum256(data); !bytes.Equal(got[:], sum) {
		return fmt.Errorf("%w: inline %s: SHA-256 mismatch", ErrInline, kind)
	}
	return nil
}

// Set puts data inline as the file of kind (FileSource or FileStdin),
// with its SHA-256 sum unless sealed.
func (in *Inline) Set(kind string, data []byte, sealed bool) {
	var sum []byte
	if !sealed {
		s := sha256.Sum256(data)
		sum = s[:]
	}
	if kind == FileStdin {
		in.Stdin, in.StdinSHA256 = data, sum
		return
	}
	in.Source, in.SourceSHA256 = data, sum
}

// Size is the number of bytes inline.
func (in Inline) Size() int { return len(in.Source) + len(in.Stdin) }
