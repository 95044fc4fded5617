package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runbook returns the commands of the fenced block under heading in
// docs/operations.md, without comments.
func runbook(t *testing.T, heading string) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("docs/operations.md has no %q", heading)
	}
	_, rest, _ = strings.Cut(rest, "```\n")
	block, _, _ := strings.Cut(rest, "```\n")
	var cmds [][]string
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, strings.Fields(l))
		}
	}
	return cmds
}

// TestUpgradeRunbook upgrades a slave to a new version with exactly the
// commands of docs/operations.md's runbook, while a job runs on it: the job
// finishes, the slave comes back with its new key and version, and the old
// version ends retired.
func TestUpgradeRunbook(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a second binary and starts processes")
	}
	steps := runbook(t, "## Upgrading a slave")
	if len(steps) < 8 {
		t.Fatalf("the runbook has %d commands", len(steps))
	}
	newBin := filepath.Join(t.TempDir(), "kiln-0.2.0")
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version=0.2.0", "-o", newBin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	c := startCluster(t, 0)
	slave := c.addSlave(t, "slave-1")
	ops := filepath.Join(c.dir, "ops.bundle")
	mustKiln(t, "certs", "issue", "--dir", c.dir, "--role", "admin", "--name", "ops", "--out", ops)
	host := t.TempDir() // the slave's host: where the runbook installs things
	installed := map[string]string{
		"kiln-0.2.0": newBin, "/usr/local/bin/kiln": filepath.Join(host, "kiln"),
		"/etc/kiln/slave.bundle": filepath.Join(host, "slave.bundle"),
	}
	work := t.TempDir() // the current directory of the commands

	// A job that runs through the whole drain.
	prog := writeFile(t, t.TempDir(), "steady.py", "import time\nprint('started', flush=True)\ntime.sleep(1.5)\nprint('done')\n")
	run := exec.Command(kilnBinary(t), "run", prog)
	run.Env = append(os.Environ(), c.env...)
	var jobOut, jobErr syncBuf
	run.Stdout, run.Stderr = &jobOut, &jobErr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	jobDone := make(chan error, 1)
	go func() { jobDone <- run.Wait() }()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(jobOut.String(), "started") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}

	adminEnv := []string{"KILN_BUNDLE=" + ops, "KILN_MASTER=" + c.clientAddr}
	var lastList string
	for _, step := range steps {
		line := strings.Join(step, " ")
		switch {
		case line == "systemctl stop kiln-slave":
			slave.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-slave.done:
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: the slave did not exit", line)
			}
			if code := slave.cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("%s: the slave exited %d", line, code)
			}
		case line == "systemctl start kiln-slave":
			slave = &proc{cmd: exec.Command(installed["/usr/local/bin/kiln"], "slave", "--bundle", installed["/etc/kiln/slave.bundle"],
				"--master", c.slaveAddr, "--slots", "2", "--load-interval", "500ms", "--work-dir", filepath.Join(host, "work")),
				out: &syncBuf{}, done: make(chan struct{})}
			slave.start(t, "slave-1 0.2.0")
			c.master.waitOutput(t, "slave registered", 2)
		case step[0] == "install":
			mode, _ := strconv.ParseUint(step[2], 8, 32)
			src := installed[step[3]]
			if src == "" {
				src = filepath.Join(work, step[3])
			}
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if err := os.WriteFile(installed[step[4]], b, os.FileMode(mode)); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
		case step[0] == "kiln":
			args := step[1:]
			for i, a := range args {
				if a == "/var/lib/kiln" {
					args[i] = c.dir
				}
			}
			cmd := exec.Command(kilnBinary(t), args...)
			cmd.Dir, cmd.Env = work, append(os.Environ(), adminEnv...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", line, err, out)
			}
			if strings.HasPrefix(line, "kiln admin server list") {
				lastList = string(out)
			}
		default:
			t.Fatalf("the runbook has a command the test cannot play: %s", line)
		}
		if line == "kiln admin server list -o wide" && !strings.Contains(lastList, "0.2.0") {
			t.Errorf("after the upgrade, server list -o wide shows no 0.2.0:\n%s", lastList)
		}
	}
	if err := <-jobDone; err != nil || jobOut.String() != "started\ndone\n" {
		t.Fatalf("the job running through the upgrade: %v, stdout %q, stderr %q", err, jobOut.String(), jobErr.String())
	}
	code, out, errs := kilnCmd(t, c.env, "run", "-v", writeFile(t, t.TempDir(), "after.py", "print('after')\n"))
	if code != 0 || out != "after\n" || !strings.Contains(errs, "on slave-1") {
		t.Fatalf("a job after the upgrade: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = kilnCmd(t, []string{"KILN_BUNDLE=" + ops, "KILN_MASTER=" + c.clientAddr}, "admin", "keys", "list")
	if code != 0 || !strings.Contains(out, "Retired versions:") || !strings.Contains(out, "upgrade-to-0.2.0") {
		t.Errorf("keys list after the runbook: exit %d\n%s", code, out)
	}
}
