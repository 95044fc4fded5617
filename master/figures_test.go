package master_test

// The figures of the job side's attacks (docs/performance.md, "Hostile key
// holders"): each attack runs against a master in a child process (this
// test binary, re-executed), so that its memory is the master's alone,
// while an honest client runs one job at a time. Run with
//
//	make hostile-figures
//
// (KILN_HOSTILE_FIGURES=1 go test -run TestHostileFigures -v ./master/);
// it takes about a minute and is not part of make test.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kiln/auth"
	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/transport/wire"
)

// childMasterEnv, set to a JSON childConfig, makes the test binary a
// master (see TestMain).
const childMasterEnv = "KILN_TEST_CHILD_MASTER"

// childConfig configures a child master.
type childConfig struct {
	Dir          string // holds master.bundle and registry.json
	MaxHeldBytes int64
	Jobs         master.JobBudget
}

// runChildMaster serves a master configured by spec until stdin closes.
// It prints "CLIENT_ADDR SLAVE_ADDR" on stdout once listening and logs to
// stderr.
func runChildMaster(spec string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(spec), &cc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b, err := certs.ReadBundle(filepath.Join(cc.Dir, "master.bundle"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	reg, err := auth.OpenRegistry(filepath.Join(cc.Dir, "registry.json"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv, err := master.New(master.Config{
		ClientAddr: "127.0.0.1:0", SlaveAddr: "127.0.0.1:0", Version: "1.0", Bundle: b, Registry: reg,
		MaxHeldBytes: cc.MaxHeldBytes, Budget: master.Budget{Jobs: cc.Jobs},
		HeartbeatInterval: 500 * time.Millisecond, RegistryPoll: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err == nil {
		err = srv.Listen()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("%s %s\n", srv.ClientAddr(), srv.SlaveAddr())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	srv.Run(ctx)
	return 0
}

// child is a master running in a child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// newChildCluster starts a child master with cfg and returns a cluster
// whose helpers (dial, fakeSlave, honestClient...) talk to it.
func newChildCluster(t *testing.T, cfg childConfig) (*cluster, *child) {
	pki := authtest.New(t)
	if err := certs.WriteBundle(filepath.Join(pki.Dir, "master.bundle"), pki.Master); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = pki.Dir
	spec, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childMasterEnv+"="+string(spec))
	logs := &syncBuffer{}
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(ch.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addrs := strings.Fields(line)
	if err != nil || len(addrs) != 2 {
		t.Fatalf("child master: %q %v\n%s", line, err, logs.String())
	}
	done := make(chan struct{})
	close(done)
	c := &cluster{t: t, pki: pki, dir: pki.Dir, ca: pki.CA, reg: pki.Registry, logs: logs,
		cancel: func() {}, done: done, clientAddr: addrs[0], slaveAddr: addrs[1]}
	return c, ch
}

func (ch *child) stop() {
	ch.stdin.Close()
	t := time.AfterFunc(10*time.Second, func() { ch.cmd.Process.Kill() })
	defer t.Stop()
	ch.cmd.Wait()
}

// status reads a field of /proc/PID/status, in KiB.
func (ch *child) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", ch.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field+":" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return -1
}

// latencies runs honest jobs, one at a time, for d or n jobs, whichever
// comes first; it returns their times and how many did not end ok.
func latencies(h *honestClient, n int, d time.Duration, limits wire.JobLimits) ([]time.Duration, int) {
	var out []time.Duration
	failed := 0
	end := time.Now().Add(d)
	for len(out) < n && time.Now().Before(end) {
		r := h.run("ok.py", []byte("print('honest')\n"), limits)
		out = append(out, r.elapsed)
		if r.err != nil || r.res.Status != wire.StatusOK {
			failed++
		}
	}
	return out, failed
}

// pct returns the p-th percentile of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p/100))]
}

// attack is one scenario of the figures.
type attack struct {
	name   string
	cfg    childConfig
	limits wire.JobLimits   // of the honest jobs
	setup  func(c *cluster) // the honest side's slaves
	start  func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup)
}

func TestHostileFigures(t *testing.T) {
	if os.Getenv("KILN_HOSTILE_FIGURES") == "" {
		t.Skip("set KILN_HOSTILE_FIGURES=1 (or run make hostile-figures) to measure the attacks; about a minute")
	}
	goodSlave := func(c *cluster) { c.fakeSlave("good", 4, false, "python") }
	attacks := []attack{
		{name: "stalled uploads: 30 sessions of one key x 2 uploads claiming 16 MiB, no byte sent", setup: goodSlave,
			start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
				bad := c.issue(certs.RoleClient, "mallory", "1.0")
				for range 30 {
					s, err := c.dial(bad, false, "")
					if err != nil {
						c.t.Fatal(err)
					}
					for id := uint64(1); id <= 2; id++ {
						s.Send(wire.MsgSubmit, id, wire.Submit{Language: "python", FileName: "a.py", SourceSize: 16 << 20})
						halt := stalledFile(c.t, s, id, 16<<20)
						wg.Go(func() { <-stop; halt() })
					}
				}
			}},
		{name: "files without a Submit: 8 sessions sending 1 MiB files in a loop", setup: goodSlave,
			start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
				bad := c.issue(certs.RoleClient, "mallory", "1.0")
				src := bytes.Repeat([]byte("#"), 1<<20)
				for range 8 {
					s, err := c.dial(bad, false, "")
					if err != nil {
						c.t.Fatal(err)
					}
					wg.Go(func() {
						for id := 1; ; id++ {
							select {
							case <-stop:
								return
							default:
							}
							hdr := wire.NewFileHeader(strconv.Itoa(id), wire.FileSource, "a.py", src)
							ctx, cancel := context.WithTimeout(context.Background(), time.Second)
							s.SendFile(ctx, hdr, bytes.NewReader(src))
							cancel()
						}
					})
				}
			}},
		{name: "file streams flood: 30 sessions of one key x 80 streams of 1 MiB at once, no Submit", setup: goodSlave,
			start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
				bad := c.issue(certs.RoleClient, "mallory", "1.0")
				src := bytes.Repeat([]byte("#"), 1<<20)
				for range 30 {
					s, err := c.dial(bad, false, "")
					if err != nil {
						c.t.Fatal(err)
					}
					for id := range 80 {
						wg.Go(func() {
							ctx, cancel := context.WithCancel(context.Background())
							defer cancel()
							go func() { <-stop; cancel() }()
							hdr := wire.NewFileHeader(strconv.Itoa(id+1), wire.FileSource, "a.py", src)
							s.SendFile(ctx, hdr, bytes.NewReader(src))
						})
					}
				}
			}},
		{name: "budget filled: 4 keys x 16 queued jobs of 16 MiB (1 GiB held)", setup: func(c *cluster) {
			goodSlave(c)
			c.fakeSlave("busy-c", 1, true, "c") // takes one c job and keeps it
		}, start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
			src := bytes.Repeat([]byte("/"), 16<<20)
			var filled sync.WaitGroup
			var accepted atomic.Int64
			for k := range 4 {
				s, err := c.dial(c.issue(certs.RoleClient, fmt.Sprintf("filler%d", k), "1.0"), false, "")
				if err != nil {
					c.t.Fatal(err)
				}
				filled.Go(func() {
					for id := uint64(1); id <= 16; id++ {
						s.Send(wire.MsgSubmit, id, wire.Submit{Language: "c", FileName: "a.c", SourceSize: int64(len(src))})
						s.SendFile(context.Background(), wire.NewFileHeader(strconv.FormatUint(id, 10), wire.FileSource, "a.c", src), bytes.NewReader(src))
					}
					for n := 0; n < 16; {
						env, err := s.Recv()
						if err != nil {
							return
						}
						switch env.Type {
						case wire.MsgAccepted:
							accepted.Add(1)
							n++
						case wire.MsgError:
							n++
						}
					}
				})
			}
			filled.Wait()
			c.t.Logf("budget filled: %d jobs of 16 MiB accepted", accepted.Load())
		}},
		{name: "a slave floods Output: 1024 slots, 64 x 1000 KiB per job", setup: goodSlave,
			start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
				c.hostileSlave("evil", 1024, flood(64, 1000<<10), nil)
			}},
		{name: "a slave captures jobs: 1024 free slots, never answers (deadline 1 s + 1 s + 1 s)",
			cfg:    childConfig{Jobs: master.JobBudget{JobCompileTime: time.Second, JobGrace: time.Second}},
			limits: wire.JobLimits{TimeMs: 1000}, setup: goodSlave,
			start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
				c.hostileSlave("evil", 1024, nil, nil)
			}},
		{name: "a slave fails every job (internal_error, slave_fault)", setup: goodSlave,
			start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
				c.hostileSlave("broken", 1024, func(h *hostileSlave, a wire.Assign) {
					h.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt,
						Status: wire.StatusInternalError, SlaveFault: true, Detail: "disk full"})
				}, nil)
			}},
		{name: "one key keeps 128 jobs queued on a 2-slot slave (50 ms per job)", setup: func(c *cluster) {
			c.hostileSlave("worker", 2, func(h *hostileSlave, a wire.Assign) {
				time.Sleep(50 * time.Millisecond)
				h.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK})
			}, nil)
		}, start: func(c *cluster, stop <-chan struct{}, wg *sync.WaitGroup) {
			s, err := c.dial(c.issue(certs.RoleClient, "mallory", "1.0"), false, "")
			if err != nil {
				c.t.Fatal(err)
			}
			src := []byte("print(1)\n")
			var inFlight atomic.Int64
			submitOne := func(id uint64) {
				inFlight.Add(1)
				s.Send(wire.MsgSubmit, id, wire.Submit{Language: "python", FileName: "m.py", SourceSize: int64(len(src))})
				s.SendFile(context.Background(), wire.NewFileHeader(strconv.FormatUint(id, 10), wire.FileSource, "m.py", src), bytes.NewReader(src))
			}
			wg.Go(func() {
				id := uint64(0)
				for {
					for inFlight.Load() < 130 {
						id++
						submitOne(id)
					}
					env, err := s.Recv()
					if err != nil {
						return
					}
					if env.Type == wire.MsgResult || env.Type == wire.MsgError {
						inFlight.Add(-1)
					}
					select {
					case <-stop:
						s.Close()
						return
					default:
					}
				}
			})
		}},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			c, ch := newChildCluster(t, a.cfg)
			a.setup(c)
			h := c.honestClient("alice")
			base, bfail := latencies(h, 100, 3*time.Second, a.limits)
			baseHWM := ch.status("VmHWM")
			stop := make(chan struct{})
			var wg sync.WaitGroup
			a.start(c, stop, &wg)
			time.Sleep(500 * time.Millisecond) // let the attack take hold
			during, dfail := latencies(h, 400, 4*time.Second, a.limits)
			hwm, rss := ch.status("VmHWM"), ch.status("VmRSS")
			close(stop)
			wg.Wait()
			ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
			t.Logf("FIGURE | %s | %d MiB | %v / %v (%d jobs, %d not ok) | %d MiB (%d MiB at the end) | %v / %v (%d jobs, %d not ok) |",
				a.name, baseHWM>>10, ms(pct(base, 99)), ms(pct(base, 100)), len(base), bfail,
				hwm>>10, rss>>10, ms(pct(during, 99)), ms(pct(during, 100)), len(during), dfail)
		})
	}
}
