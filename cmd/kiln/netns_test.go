package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kiln/internal/testenv"
)

// TestMultiHost runs the master and two slaves on their own "hosts": three
// network namespaces joined by veth pairs, each with its own address. The
// master's certificate names its addresses; jobs cross the links. The test
// makes the namespaces and removes them; where it cannot (no root, no ip),
// it says so and skips.
func TestMultiHost(t *testing.T) {
	testenv.Root(t, "network namespaces (multi-host test)")
	testenv.Command(t, "ip")
	tag := fmt.Sprintf("k%d", os.Getpid()%100000)
	nsM, nsA, nsB := tag+"m", tag+"a", tag+"b"
	ip := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	for _, ns := range []string{nsM, nsA, nsB} {
		if err := ip("netns", "add", ns); err != nil {
			testenv.Need(t, "network namespaces (multi-host test)", err)
		}
		t.Cleanup(func() { ip("netns", "del", ns) })
	}
	// m <-> a on 10.201.1.0/24, m <-> b on 10.201.2.0/24.
	links := []struct{ ns, mAddr, sAddr, mIf, sIf string }{
		{nsA, "10.201.1.1/24", "10.201.1.2/24", tag + "ma", tag + "am"},
		{nsB, "10.201.2.1/24", "10.201.2.2/24", tag + "mb", tag + "bm"},
	}
	steps := [][]string{
		{"-n", nsM, "link", "set", "lo", "up"},
	}
	for _, l := range links {
		steps = append(steps,
			[]string{"link", "add", l.mIf, "netns", nsM, "type", "veth", "peer", "name", l.sIf, "netns", l.ns},
			[]string{"-n", nsM, "addr", "add", l.mAddr, "dev", l.mIf},
			[]string{"-n", l.ns, "addr", "add", l.sAddr, "dev", l.sIf},
			[]string{"-n", nsM, "link", "set", l.mIf, "up"},
			[]string{"-n", l.ns, "link", "set", l.sIf, "up"},
			[]string{"-n", l.ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			t.Fatal(err)
		}
	}
	bin := kilnBinary(t)
	dir := t.TempDir()
	mustKiln(t, "certs", "init", "--dir", dir, "--master-host", "10.201.1.1,10.201.2.1,127.0.0.1")
	mustKiln(t, "certs", "issue", "--dir", dir, "--role", "client", "--name", "user", "--out", filepath.Join(dir, "client.bundle"))
	inNS := func(ns string, args ...string) []string {
		return append([]string{"netns", "exec", ns, bin}, args...)
	}
	master := startIP(t, "master", inNS(nsM, "master", "--dir", dir, "--client-addr", "127.0.0.1:7400",
		"--slave-addr", "0.0.0.0:7401", "--console", "off")...)
	for i, l := range links {
		name := fmt.Sprintf("slave-%c", 'a'+i)
		b := filepath.Join(dir, name+".bundle")
		mustKiln(t, "certs", "issue", "--dir", dir, "--role", "slave", "--name", name, "--out", b)
		mAddr := strings.Split(l.mAddr, "/")[0]
		startIP(t, name, inNS(l.ns, "slave", "--bundle", b, "--master", mAddr+":7401", "--slots", "1",
			"--work-dir", filepath.Join(dir, name+"-work"))...)
	}
	master.waitOutput(t, "slave registered", 2)
	if !strings.Contains(master.out.String(), "addr=10.201.1.2:") || !strings.Contains(master.out.String(), "addr=10.201.2.2:") {
		t.Fatalf("slaves did not connect from their own addresses:\n%s", master.out.String())
	}
	prog := writeFile(t, t.TempDir(), "where.py", "import socket\nprint('ran on', socket.gethostname())\n")
	seen := map[string]bool{}
	for i := 0; i < 6 && len(seen) < 2; i++ {
		// Without the slave cache: with it, each run prefers the idle
		// slave the last one went to, and this test wants both reached.
		cmd := exec.Command("ip", "netns", "exec", nsM, bin, "run", "--json", "--no-slave-cache",
			"--bundle", filepath.Join(dir, "client.bundle"), "--master", "127.0.0.1:7400", prog)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("run across namespaces: %v\n%s", err, out)
		}
		for _, s := range []string{"slave-a", "slave-b"} {
			if strings.Contains(string(out), `"slave":"`+s+`"`) || strings.Contains(string(out), `"slave": "`+s+`"`) {
				seen[s] = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(seen) != 2 {
		t.Fatalf("jobs ran on %v, want both slaves", seen)
	}
}

// startIP starts `ip args...` (a kiln process inside a namespace) as a
// test-owned process.
func startIP(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command("ip", args...), out: &syncBuf{}, done: make(chan struct{})}
	return p.start(t, name)
}
