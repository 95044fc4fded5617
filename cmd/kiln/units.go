package main

import (
	"strconv"
	"strings"

	"kiln/limits"
)

// parseSize parses a byte size such as "256MiB", "1GiB", "512k", "1.5m" or
// "4096" (bytes); see limits.ParseSize.
func parseSize(s string) (int64, error) { return limits.ParseSize(s) }

// sizeFlag is a flag.Value holding a byte size parsed by parseSize.
type sizeFlag int64

func (f *sizeFlag) String() string { return formatSize(int64(*f)) }

func (f *sizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	*f = sizeFlag(v)
	return nil
}

// formatSize renders n bytes with a binary unit, e.g. "256MiB" or "1.5KiB".
func formatSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f, i := float64(n), 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strings.TrimSuffix(strconv.FormatFloat(f, 'f', 1, 64), ".0") + units[i]
}
