package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/certs"
	"kiln/client"
	"kiln/internal/testenv"
	"kiln/slave"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// startSlaveWith runs a real slave with the built-in languages plus
// extra, until the test ends, and waits until it registered.
func (c *sealedCluster) startSlaveWith(name string, extra []slave.LanguageSpec) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	specs := slave.MergeLanguages(slave.BuiltinLanguages(), extra)
	tcs, _ := slave.DetectLanguages(ctx, specs)
	exe, err := slave.NewExecutor(slave.ExecConfig{Name: name, WorkRoot: c.t.TempDir(), Runner: &sandbox.Plain{},
		Toolchains: tcs, Languages: specs})
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := slave.New(slave.Config{Bundle: c.issue(certs.RoleSlave, name), Master: c.srv.SlaveAddr(), Slots: 2,
		LoadInterval: 100 * time.Millisecond, Executor: exe})
	if err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	c.t.Cleanup(sync.OnceFunc(func() { cancel(); <-done }))
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, si := range c.srv.Slaves() {
			if si.Name == name && si.Registered {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("slave %s never registered", name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A sealed test batch through a real master and slave: every verdict
// comes back, and no case's input or expected output crosses the master
// in the clear.
func TestSealedBatchEndToEnd(t *testing.T) {
	testenv.Command(t, "g++")
	c := newSealedCluster(t)
	c.startSlave("s1", nil)
	src := `#include <iostream>
#include <string>
int main() { std::string s; std::cin >> s; std::cout << s << "-ok" << std::endl; }
`
	var cases []client.TestCase
	for i := range 10 {
		in := fmt.Sprintf("case-marker-%02d-7f3a", i)
		want := in + "-ok\n"
		if i == 4 {
			want = "expected-marker-4-9c1d\n"
		}
		cases = append(cases, client.TestCase{Stdin: []byte(in), Expected: []byte(want)})
	}
	for _, sealed := range []bool{true, false} {
		c.rec.reset()
		out, err := c.run(client.Request{FileName: "echo.cpp", Source: []byte(src), Seal: sealed,
			Tests: &client.Tests{Cases: cases}})
		if err != nil {
			t.Fatalf("sealed=%v: %v", sealed, err)
		}
		if out.Result.Status != wire.StatusOK || out.Result.Tests == nil || out.Result.Tests.Passed != 9 || len(out.Tests) != 10 {
			t.Fatalf("sealed=%v: %+v %+v", sealed, out.Result, out.Result.Tests)
		}
		for i, v := range out.Tests {
			if want := map[bool]string{true: wire.TestWrongAnswer, false: wire.TestAccepted}[i == 4]; v.Status != want || v.Index != i {
				t.Errorf("sealed=%v: test %d %+v, want %s", sealed, i, v, want)
			}
		}
		for _, s := range []string{"case-marker-03-7f3a", "expected-marker-4-9c1d"} {
			if seen := c.rec.contains(s); seen == sealed {
				t.Errorf("sealed=%v: %q seen by the master: %v", sealed, s, seen)
			}
		}
	}
}

// A language that exists only in a languages file runs end to end: the
// slave announces it, the client finds it by its extension through Info,
// the master checks it against the registration.
func TestConfiguredLanguageEndToEnd(t *testing.T) {
	testenv.Command(t, "bash")
	specs, err := slave.ParseLanguages("test.json", []byte(`{"languages": [{
		"name": "bash", "extensions": [".sh"],
		"detect": {"tools": ["/bin/bash", "bash"], "version": ["--version"]},
		"source": {"name": "main.sh"}, "run": ["{tool}", "{src}"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c := newSealedCluster(t)
	c.startSlaveWith("s1", specs)
	out, err := c.run(client.Request{FileName: "double.sh", Source: []byte("read n; echo $((n * 2))\n"), Stdin: []byte("21\n"), Seal: true})
	if err != nil || out.Result.Status != wire.StatusOK || string(out.Stdout) != "42\n" || out.Result.Language != "bash" ||
		!strings.HasPrefix(out.Result.Compiler, "GNU bash") {
		t.Fatalf("%v %+v stdout %q", err, out.Result, out.Stdout)
	}
	// And a batch of it, with the tokens compare mode.
	out, err = c.run(client.Request{FileName: "double.sh", Source: []byte("read n; echo \"$((n * 2)).0000001\"\n"),
		Tests: &client.Tests{Compare: wire.CompareTokens, AbsTol: 1e-6, Cases: []client.TestCase{
			{Stdin: []byte("1"), Expected: []byte("2")}, {Stdin: []byte("5"), Expected: []byte("10.5")}}}})
	if err != nil || len(out.Tests) != 2 || out.Tests[0].Status != wire.TestAccepted || out.Tests[1].Status != wire.TestWrongAnswer {
		t.Fatalf("%v %+v %+v", err, out.Result, out.Tests)
	}
}
