package main

import "testing"

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"4096", 4096, false},
		{"256MiB", 256 << 20, false},
		{"1GiB", 1 << 30, false},
		{"512k", 512 << 10, false},
		{"512K", 512 << 10, false},
		{"1.5m", 3 << 19, false},
		{"10MB", 10e6, false},
		{"2 MiB", 2 << 20, false},
		{"7b", 7, false},
		{"", 0, true},
		{"MiB", 0, true},
		{"-1k", 0, true},
		{"12x", 0, true},
		{"1e30GiB", 0, true},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, bad=%v", c.in, got, err, c.want, c.bad)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for in, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 1536: "1.5KiB", 256 << 20: "256MiB"} {
		if got := formatSize(in); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", in, got, want)
		}
	}
}
