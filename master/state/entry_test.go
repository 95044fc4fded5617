package state

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"kiln/transport/wire"
)

// TestEntryEncoding: encodeEntry writes the bytes the log has always
// held (msgpack.Marshal of the commands as raw messages), for every size
// of array header, and DecodeEntry reads them back in order.
func TestEntryEncoding(t *testing.T) {
	now := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	for _, n := range []int{1, 2, 15, 16, 17, 300, 65535, 65536} {
		cmds := make([][]byte, n)
		raw := make([]msgpack.RawMessage, n)
		for i := range cmds {
			c := &Command{Kind: []Kind{KindDeliver, KindAssign, KindStop}[i%3], Now: now, Job: fmt.Sprintf("J%d", i), Attempt: i % 5}
			b, err := c.Encode()
			if err != nil {
				t.Fatal(err)
			}
			cmds[i], raw[i] = b, b
		}
		want, err := msgpack.Marshal(raw)
		if err != nil {
			t.Fatal(err)
		}
		got := encodeEntry(cmds)
		if !bytes.Equal(got, want) {
			t.Fatalf("%d commands: entry differs from msgpack's: % x… against % x…", n, got[:min(8, len(got))], want[:min(8, len(want))])
		}
		dec, err := DecodeEntry(got)
		if err != nil {
			t.Fatalf("%d commands: %v", n, err)
		}
		if len(dec) != n {
			t.Fatalf("%d commands decoded as %d", n, len(dec))
		}
		for i, c := range dec {
			if c.Job != fmt.Sprintf("J%d", i) || c.Attempt != i%5 || !c.Now.Equal(now) {
				t.Fatalf("%d commands: command %d decoded as %+v", n, i, c)
			}
		}
	}
}

// TestDecodeEntryRefuses: a damaged entry is refused with ErrBadCommand,
// never half read.
func TestDecodeEntryRefuses(t *testing.T) {
	good, _ := (&Command{Kind: KindStop, Now: time.Unix(1, 0)}).Encode()
	bad, _ := msgpack.Marshal(map[string]any{"kind": 99, "now": time.Unix(1, 0)})
	for name, b := range map[string][]byte{
		"empty":          nil,
		"nil":            {0xc0},
		"not an array":   good,
		"truncated":      encodeEntry([][]byte{good, good})[:len(good)],
		"short array":    append([]byte{0x93}, bytes.Repeat(good, 2)...),
		"huge count":     {0xdd, 0xff, 0xff, 0xff, 0xff},
		"unknown kind":   encodeEntry([][]byte{good, bad}),
		"not a command":  encodeEntry([][]byte{good, {0x92, 0x01, 0x02}}),
		"garbage inside": encodeEntry([][]byte{good, {0xd9, 0xff}}),
	} {
		if cmds, err := DecodeEntry(b); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: %d commands, err %v; want ErrBadCommand", name, len(cmds), err)
		}
	}
}

// FuzzDecodeEntry: any bytes in a log entry either fail with
// ErrBadCommand or decode to commands whose entry decodes to as many of
// the same kinds.
func FuzzDecodeEntry(f *testing.F) {
	a, _ := (&Command{Kind: KindStop, Now: time.Unix(1, 0)}).Encode()
	b, _ := (&Command{Kind: KindAssign, Now: time.Unix(2, 0), Job: "J1", Attempt: 1, Slave: "s"}).Encode()
	f.Add(encodeEntry([][]byte{a}))
	f.Add(encodeEntry([][]byte{a, b, a}))
	f.Fuzz(func(t *testing.T, e []byte) {
		cmds, err := DecodeEntry(e)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v is not ErrBadCommand", err)
			}
			return
		}
		enc := make([][]byte, len(cmds))
		for i, c := range cmds {
			if enc[i], err = c.Encode(); err != nil {
				t.Fatal(err)
			}
		}
		again, err := DecodeEntry(encodeEntry(enc))
		if err != nil || len(again) != len(cmds) {
			t.Fatalf("re-decode: %v, %d commands of %d", err, len(again), len(cmds))
		}
		for i := range cmds {
			if again[i].Kind != cmds[i].Kind || again[i].Job != cmds[i].Job {
				t.Fatalf("command %d: %+v then %+v", i, cmds[i], again[i])
			}
		}
	})
}

// TestCommandEncoding: Encode writes the bytes msgpack.Marshal writes
// (the log's format), whether its size hint is short or long.
func TestCommandEncoding(t *testing.T) {
	now := time.Date(2026, 11, 29, 18, 0, 0, 0, time.UTC)
	big := bytes.Repeat([]byte("x"), 100<<10)
	for i, c := range []*Command{
		{Kind: KindStop, Now: now},
		{Kind: KindAssign, Now: now, Job: "J1", Attempt: 2, Slave: "s1"},
		{Kind: KindSubmit, Now: now, MaxBytes: 1 << 30, New: &Job{Owner: "o", Name: "alice", Source: big,
			Submit: wire.Submit{Language: "c", FileName: "a.c", Sealed: true, ClientKey: make([]byte, 32),
				Wraps: []wire.KeyWrap{{Slave: "s1", Key: make([]byte, 81), SealKey: make([]byte, 32)}}}}},
		{Kind: KindResult, Now: now, Job: "J1", Attempt: 1, Result: &wire.Result{JobID: "J1", Status: wire.StatusOK, Verdict: big[:300]},
			Output: []Chunk{{Stream: 1, Data: big}, {Stream: 2, Seq: 1, Data: big[:10], Key: make([]byte, 81)}}},
		{Kind: KindWraps, Now: now, Job: "J1", Wraps: []Wrap{{Slave: "s1", Key: make([]byte, 81)}}},
	} {
		got, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		want, err := msgpack.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("command %d (%s): Encode differs from msgpack.Marshal", i, c.Kind)
		}
	}
}
