package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kiln/certs"
	"kiln/client"
	"kiln/internal/testenv"
	"kiln/slave"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// startStrictSlave runs a real slave behind the strict sandbox (its init
// is the kiln binary) with a compile cache, shared across clients or not.
func (c *sealedCluster) startStrictSlave(name string, shared bool) {
	c.t.Helper()
	// The init starts as an unprivileged host uid: it must reach the binary.
	bin := kilnBinary(c.t)
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		c.t.Fatal(err)
	}
	r, err := sandbox.NewStrict(sandbox.StrictConfig{Exe: bin})
	if err != nil {
		c.t.Fatal(err)
	}
	cache, err := slave.NewCache(c.t.TempDir(), 64<<20)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exe, err := slave.NewExecutor(slave.ExecConfig{Name: name, WorkRoot: c.t.TempDir(), Runner: r,
		Toolchains: slave.Detect(ctx), Cache: cache, SharedCache: shared})
	if err != nil {
		c.t.Fatal(err)
	}
	c.runSlave(ctx, cancel, name, exe, func() { exe.Close(); r.Close() })
}

// bob compiles a file; alice, with a key of her own, sends the same text
// under the same name: "cached: true" would tell her that someone did.
// Only a slave started with --shared-compile-cache may tell her.
func TestCompileCacheIsNoOracleAcrossClients(t *testing.T) {
	testenv.Root(t, "the strict sandbox")
	testenv.Command(t, "gcc")
	for _, shared := range []bool{false, true} {
		c := newSealedCluster(t) // its client is alice
		c.startStrictSlave("s1", shared)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		bob, err := client.Dial(ctx, client.Config{Bundle: c.issue(certs.RoleClient, "bob"), Master: c.srv.ClientAddr()})
		if err != nil {
			t.Fatal(err)
		}
		src := []byte("#include <stdio.h>\nint main(void) { puts(\"bob's answer\"); return 0; }\n")
		run := func(cl *client.Client) wire.Result {
			job, err := cl.Submit(ctx, client.Request{FileName: "answer.c", Source: src, Seal: true})
			if err != nil {
				t.Fatal(err)
			}
			out, err := job.Wait(ctx)
			if err != nil || out.Result.Status != wire.StatusOK || string(out.Stdout) != "bob's answer\n" {
				t.Fatalf("shared %v: %v %+v %q", shared, err, out.Result, out.Stdout)
			}
			return out.Result
		}
		first, alice, again := run(bob), run(c.client), run(c.client)
		bob.Close()
		cancel()
		if first.Cached || alice.Cached != shared || !again.Cached {
			t.Fatalf("shared %v: cached bob %v, alice %v, alice again %v", shared, first.Cached, alice.Cached, again.Cached)
		}
	}
}
