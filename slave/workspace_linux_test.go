package slave

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"kiln/internal/testenv"
	"kiln/slave/sandbox"
	"kiln/transport/wire"
)

// inspectRunner checks the job directory while the step runs.
type inspectRunner struct {
	sandbox.Runner
	check func(dir string)
}

func (r *inspectRunner) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Outcome, error) {
	r.check(spec.Dir)
	return r.Runner.Run(ctx, spec)
}

// Job directories live on a private tmpfs, 0700, their files 0600, and
// nothing goes to the work root on disk.
func TestJobDirsArePrivate(t *testing.T) {
	testenv.Root(t, "a private tmpfs (fsopen)")
	needLang(t, wire.LangC)
	root := t.TempDir()
	var seen []string
	r := &inspectRunner{Runner: newStrictRunner(t), check: func(dir string) {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil || st.Type != 0x01021994 {
			t.Errorf("job dir %s is not on a tmpfs: %v %x", dir, err, st.Type)
		}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, _ := d.Info()
			want := fs.FileMode(0o600)
			if d.IsDir() {
				want = 0o700
			} else if fi.Mode()&0o100 != 0 {
				want = 0o700 // the program
			}
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %v, want %v", p, fi.Mode().Perm(), want)
			}
			seen = append(seen, d.Name())
			return nil
		})
	}}
	e, err := NewExecutor(ExecConfig{WorkRoot: root, Runner: r, Toolchains: toolchains(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !e.Private() {
		t.Fatal("no private tmpfs")
	}
	res, c := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: []byte("#include <stdio.h>\nint main(void){puts(\"ok\");return 0;}\n")})
	if res.Status != wire.StatusOK || c.stream(wire.StreamStdout) != "ok\n" || len(seen) != 5 {
		t.Fatalf("%+v %q; saw %v", res, res.CompileOutput, seen)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Fatalf("work root on disk used: %v", ents)
	}
}

const killMarker = "KILN-SIGKILL-MARKER-"

// TestHelperKilledSlave is the slave killed by TestSIGKILLedSlaveLeavesNoSource.
func TestHelperKilledSlave(t *testing.T) {
	root := os.Getenv("KILN_TEST_KILLED_SLAVE")
	if root == "" {
		t.Skip("helper process only")
	}
	r, err := sandbox.NewStrict(sandbox.StrictConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	e, err := NewExecutor(ExecConfig{WorkRoot: root, WorkBytes: map[bool]int64{true: -1}[os.Getenv("KILN_TEST_ON_DISK") != ""],
		Runner: r, Toolchains: Detect(context.Background())})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Compiled, not cached: the compile step needs a job directory, and the
	// run happens in it (a cached or interpreted run has none at all).
	src := "#include <stdio.h>\n#include <unistd.h>\nint main(void){puts(\"started\");fflush(stdout);sleep(60);return 0;}\n// " +
		killMarker + os.Getenv("KILN_TEST_MARKER") + "\n"
	e.Execute(context.Background(), Job{ID: "j", Language: wire.LangC, FileName: "a.c", Source: []byte(src),
		Limits: wire.JobLimits{TimeMs: 60000}}, func(_ uint8, b []byte) { os.Stdout.Write(b) })
}

// A SIGKILLed slave used to leave its running jobs' sources in plaintext
// in its work directory. Started as a real process, killed mid-job, it
// must leave nothing on disk; the on-disk fallback shows that the check
// sees leftovers, and that the next start sweeps them.
func TestSIGKILLedSlaveLeavesNoSource(t *testing.T) {
	testenv.Root(t, "the strict sandbox and a private tmpfs")
	needLang(t, wire.LangC)
	for _, onDisk := range []bool{false, true} {
		root := t.TempDir()
		marker := fmt.Sprint(os.Getpid(), time.Now().UnixNano())
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperKilledSlave$", "-test.v")
		cmd.Env = append(os.Environ(), "KILN_TEST_KILLED_SLAVE="+root, "KILN_TEST_MARKER="+marker)
		if onDisk {
			cmd.Env = append(cmd.Env, "KILN_TEST_ON_DISK=1")
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		started := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.Contains(sc.Text(), "started") {
					started <- true
					break
				}
			}
			close(started)
			for sc.Scan() {
			}
		}()
		select {
		case ok := <-started:
			if !ok {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("the helper slave ended before its job started")
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the helper slave's job never started")
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		left := grepTree(root, killMarker+marker)
		if !onDisk && len(left) != 0 {
			t.Fatalf("source left on disk by a SIGKILLed slave: %v", left)
		}
		if onDisk {
			if len(left) == 0 {
				t.Fatal("on disk the source must be found (the check is blind otherwise)")
			}
			e, err := NewExecutor(ExecConfig{WorkRoot: root, WorkBytes: -1, Runner: &sandbox.Plain{}})
			if err != nil {
				t.Fatal(err)
			}
			e.Close()
			if left := grepTree(root, killMarker+marker); len(left) != 0 {
				t.Fatalf("not swept at start: %v", left)
			}
		}
	}
}

// grepTree lists the files below root that contain s.
func grepTree(root, s string) []string {
	var found []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(s)) {
				found = append(found, p)
			}
		}
		return nil
	})
	return found
}

// The private tmpfs is bounded: a compiled program bigger than it fails
// that job as its own (compile_error, no slave fault), and the next job
// runs.
func TestPrivateDirIsBounded(t *testing.T) {
	needLang(t, wire.LangC)
	r := newStrictRunner(t)
	e, err := NewExecutor(ExecConfig{WorkRoot: t.TempDir(), WorkBytes: 1 << 20, Runner: r, Toolchains: toolchains(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, _ := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: []byte("char big[2<<20] = {1};\nint main(void){return big[0] - 1;}\n")})
	if res.Status != wire.StatusCompileError || res.SlaveFault || !strings.Contains(res.Detail, "job directories are full") {
		t.Fatalf("a 2 MiB program on a 1 MiB work tmpfs: %+v", res)
	}
	res, c := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Source: []byte("#include <stdio.h>\nint main(void){puts(\"ok\");return 0;}\n")})
	if res.Status != wire.StatusOK || c.stream(wire.StreamStdout) != "ok\n" {
		t.Fatalf("next job: %+v", res)
	}
}

// hugeBuild is three lines of C that build to a 60 MiB program, copied
// back into the job directory.
const hugeBuild = "char a[60 << 20] = {1};\nint main(void) { return a[0] - 1; }\n"

// barrierRunner makes each of its first n compile steps (steps that copy
// back) wait for the others' before it returns.
type barrierRunner struct {
	sandbox.Runner
	n  int
	wg sync.WaitGroup

	mu    sync.Mutex
	steps int
}

func (r *barrierRunner) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Outcome, error) {
	o, err := r.Runner.Run(ctx, spec)
	if spec.Keep == nil {
		return o, err
	}
	r.mu.Lock()
	r.steps++
	wait := r.steps <= r.n
	r.mu.Unlock()
	if wait {
		r.wg.Done()
		r.wg.Wait()
	}
	return o, err
}

// TestFullJobDirsAreNoSlaveFault is the red team's attack: one client
// key's jobs, each three lines of C building to 60 MiB, at once on a
// slave whose job directories' tmpfs (2 GiB whatever the slots) they
// fill. The job that met ENOSPC ended internal_error with slave_fault,
// so the master struck the honest slave (quarantined after 3). Here the
// tmpfs holds two such builds and three run at once: none is the
// slave's fault, the one that did not fit ends compile_error saying so,
// and the next job runs.
func TestFullJobDirsAreNoSlaveFault(t *testing.T) {
	results := bigBuildsAtOnce(t, ExecConfig{WorkBytes: 150 << 20})
	full := 0
	for _, res := range results {
		switch {
		case res.SlaveFault:
			t.Fatalf("a full job tmpfs struck against the slave: %+v", res)
		case res.Status == wire.StatusCompileError && strings.Contains(res.Detail, "job directories are full"):
			full++
		case res.Status != wire.StatusOK:
			t.Fatalf("a 60 MiB build: %+v", res)
		}
	}
	if full == 0 {
		t.Fatalf("three 60 MiB builds at once on a 150 MiB tmpfs all fit: %+v", results)
	}
}

// TestENOSPCWithRoomIsTheSlaves: ENOSPC while the job directories'
// tmpfs has room left (a kernel limit on mount namespaces gives it too) is
// still the slave's own failure, struck against it.
func TestENOSPCWithRoomIsTheSlaves(t *testing.T) {
	e, err := NewExecutor(ExecConfig{WorkRoot: t.TempDir(), Slots: 4, JobDirBytes: 1 << 20, Runner: newStrictRunner(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !e.Private() {
		t.Fatal("no private tmpfs")
	}
	res := e.internal(wire.Result{JobID: "j"}, "start", fmt.Errorf("unshare: %w", syscall.ENOSPC))
	if res.Status != wire.StatusInternalError || !res.SlaveFault {
		t.Fatalf("ENOSPC with the tmpfs empty: %+v", res)
	}
}

// TestJobDirsSizedBySlots: with no WorkBytes the tmpfs is JobDirBytes per
// slot, so as many jobs as there are slots fit at their bounds: three
// 60 MiB builds at once on three slots of 70 MiB all run.
func TestJobDirsSizedBySlots(t *testing.T) {
	for _, res := range bigBuildsAtOnce(t, ExecConfig{Slots: 3, JobDirBytes: 70 << 20}) {
		if res.Status != wire.StatusOK || res.SlaveFault {
			t.Fatalf("a 60 MiB build on a slot of 70 MiB: %+v", res)
		}
	}
}

// bigBuildsAtOnce runs three jobs of one client key, each building to
// 60 MiB, with all three builds copied back before any job goes on, then
// an honest job, which must run; it returns the three results.
func bigBuildsAtOnce(t *testing.T, cfg ExecConfig) []wire.Result {
	needLang(t, wire.LangC)
	r := &barrierRunner{Runner: newStrictRunner(t), n: 3}
	r.wg.Add(r.n)
	cfg.WorkRoot, cfg.Runner, cfg.Toolchains = t.TempDir(), r, toolchains(t)
	e, err := NewExecutor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var wg sync.WaitGroup
	results := make([]wire.Result, r.n)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.Execute(context.Background(), Job{ID: fmt.Sprintf("big-%d", i), Owner: "one-key", Language: wire.LangC,
				FileName: "a.c", Source: []byte(hugeBuild + fmt.Sprintf("int n%d;\n", i))}, func(uint8, []byte) {})
		}()
	}
	wg.Wait()
	res, c := execute(t, e, Job{Language: wire.LangC, FileName: "a.c", Owner: "honest", Source: []byte("#include <stdio.h>\nint main(void){puts(\"ok\");return 0;}\n")})
	if res.Status != wire.StatusOK || c.stream(wire.StreamStdout) != "ok\n" {
		t.Fatalf("the honest next job: %+v", res)
	}
	return results
}

// Close waits for the jobs in progress before releasing the private
// tmpfs, and a job after Close fails cleanly.
func TestExecutorCloseWaitsForJobs(t *testing.T) {
	needLang(t, wire.LangPython)
	e, err := NewExecutor(ExecConfig{WorkRoot: t.TempDir(), Runner: newStrictRunner(t), Toolchains: toolchains(t)})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan wire.Result, 1)
	go func() {
		res := e.Execute(context.Background(), Job{ID: "slow", Language: wire.LangPython, FileName: "a.py",
			Source: []byte("import time\nprint('started', flush=True)\ntime.sleep(0.3)\nprint('done')\n")}, func(uint8, []byte) {
			select {
			case <-started:
			default:
				close(started)
			}
		})
		done <- res
	}()
	<-started
	e.Close()
	select {
	case res := <-done:
		if res.Status != wire.StatusOK {
			t.Fatalf("job cut by Close: %+v", res)
		}
	default:
		t.Fatal("Close returned before the job in progress")
	}
	if res, _ := execute(t, e, Job{Language: wire.LangPython, FileName: "a.py", Source: []byte("print(1)\n")}); res.Status != wire.StatusInternalError {
		t.Fatalf("a job after Close: %+v", res)
	}
}

// TestFullJobDirsOverTheWire is the same attack on a running slave, over
// mutual TLS: one client key's three 60 MiB builds at once on a slave of
// three slots whose job directories' tmpfs is set to 150 MiB. The Results
// the master reads carry no slave_fault (what it strikes a slave for), and
// the honest next job, of another key, runs.
func TestFullJobDirsOverTheWire(t *testing.T) {
	needLang(t, wire.LangC)
	r := &barrierRunner{Runner: newStrictRunner(t), n: 3}
	r.wg.Add(r.n)
	e, err := NewExecutor(ExecConfig{Name: "s", WorkRoot: t.TempDir(), WorkBytes: 150 << 20, Slots: 3, Runner: r, Toolchains: toolchains(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	mb, sb := newPKI(t)
	m := startMaster(t, mb, welcomeAll)
	startSlave(t, m, sb, time.Minute, func(c *Config) { c.Executor, c.Slots = e, 3 })
	ms := m.next(t)
	var reg wire.Register
	ms.expect(t, wire.MsgRegister, &reg)
	for i := range r.n {
		id := fmt.Sprintf("big-%d", i)
		src := []byte(hugeBuild + fmt.Sprintf("int n%d;\n", i))
		ms.sendFile(t, id, wire.FileSource, src)
		ms.assign(t, wire.Assign{JobID: id, Attempt: 1, Owner: "mallory", Language: wire.LangC, FileName: "a.c", SourceSize: int64(len(src))})
	}
	full := 0
	for range r.n {
		var res wire.Result
		ms.expect(t, wire.MsgResult, &res)
		switch {
		case res.SlaveFault:
			t.Fatalf("a full job tmpfs reported as the slave's fault: %+v", res)
		case res.Status == wire.StatusCompileError:
			full++
		case res.Status != wire.StatusOK:
			t.Fatalf("%s: %+v", res.JobID, res)
		}
	}
	if full == 0 {
		t.Fatal("three 60 MiB builds at once on a 150 MiB tmpfs all fit")
	}
	src := []byte("#include <stdio.h>\nint main(void){puts(\"ok\");return 0;}\n")
	ms.sendFile(t, "honest", wire.FileSource, src)
	ms.assign(t, wire.Assign{JobID: "honest", Attempt: 1, Owner: "alice", Language: wire.LangC, FileName: "a.c", SourceSize: int64(len(src))})
	if res, out := ms.jobResult(t, "honest"); res.Status != wire.StatusOK || out[wire.StreamStdout] != "ok\n" {
		t.Fatalf("the honest next job: %+v, %q", res, out[wire.StreamStdout])
	}
}
