package main

import (
	"fmt"
	"strings"
	"testing"

	"kiln/client"
	"kiln/transport/wire"
)

// TestInlineAndStreamedJobs: through a real master and a real slave over
// mutual TLS, sealed and not, a job whose files travel inline (small), one
// whose stdin is past what wire.MaxInline leaves (source inline, stdin on
// a stream) and one whose source is past it (on a stream) all run with
// their exact files.
func TestInlineAndStreamedJobs(t *testing.T) {
	c := newSealedCluster(t)
	c.startSlave("s1", nil)
	const prog = "import sys, hashlib\nd = sys.stdin.buffer.read()\nprint(len(d), hashlib.sha256(d).hexdigest()[:12])\n"
	pad := "#" + strings.Repeat("p", wire.MaxInline) + "\n"
	big := []byte(strings.Repeat("0123456789abcdef", wire.MaxInline/16+1))
	cases := []struct {
		name       string
		src, stdin string
		want       string
	}{
		{"inline", prog, "small\n", "6 "},
		{"stdin streamed", prog, string(big), fmt.Sprintf("%d ", len(big))},
		{"source streamed", pad + prog, "x", "1 "},
	}
	for _, sealed := range []bool{false, true} {
		for _, tc := range cases {
			out, err := c.run(client.Request{FileName: "p.py", Source: []byte(tc.src), Stdin: []byte(tc.stdin), Seal: sealed})
			if err != nil {
				t.Fatalf("%s sealed=%v: %v", tc.name, sealed, err)
			}
			if out.Result.Status != wire.StatusOK || !strings.HasPrefix(string(out.Stdout), tc.want) {
				t.Errorf("%s sealed=%v: %+v stdout %q, want it to start with %q", tc.name, sealed, out.Result, out.Stdout, tc.want)
			}
		}
	}
}
