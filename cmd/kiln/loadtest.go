package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/internal/loadtest"
)

// loadtestOptions are the flags of `kiln loadtest`.
type loadtestOptions struct {
	slaves, slots, sessions, keys int
	delay, step, drain            time.Duration
	rates                         string
	profile                       string
	// master is the kiln binary to run as the master ("" for this one),
	// so that two builds are compared under one harness; inMemory runs
	// it with --in-memory (no durable state).
	master   string
	inMemory bool
	streams  bool
	quiet    bool
}

func cmdLoadtest(ctx context.Context, e env, args []string) int {
	var o loadtestOptions
	fs := flag.NewFlagSet("kiln loadtest", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.IntVar(&o.slaves, "slaves", 100, "simulated slaves")
	fs.IntVar(&o.slots, "slots", 16, "slots of each simulated slave")
	fs.IntVar(&o.sessions, "sessions", 1000, "client sessions")
	fs.IntVar(&o.keys, "client-keys", 100, "client keys the sessions are spread over (the master allows 32 sessions per key)")
	fs.DurationVar(&o.delay, "delay", 0, "how long a simulated slave takes to answer a job")
	fs.StringVar(&o.rates, "rates", "250,500,1000,2000,4000", "comma-separated `LIST` of offered jobs/s, one step each")
	fs.DurationVar(&o.step, "step", 4*time.Second, "duration of each step")
	fs.DurationVar(&o.drain, "drain", 10*time.Second, "how long a step waits for its last results")
	fs.StringVar(&o.profile, "master-profile", "", "write a CPU profile of the master to `FILE`")
	fs.StringVar(&o.master, "master", "", "kiln `BINARY` to run as the master (default: this one), to compare two builds under the same harness")
	fs.BoolVar(&o.inMemory, "in-memory", false, "run the master with --in-memory (no durable job state)")
	fs.BoolVar(&o.quiet, "quiet", false, "client sessions announce feature quiet, as kiln bench does: no progress JobState from a master that speaks it")
	fs.BoolVar(&o.streams, "streams", false, "send each job's source on a file stream (as before feature inline) instead of inside Submit and Assign")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: kiln loadtest [flags]\n\n"+
			"Runs a real master (this binary, `kiln master`, as a child process with a\n"+
			"throwaway CA) against simulated slaves and client sessions over mutual TLS,\n"+
			"offers each rate of --rates in turn, and prints per step: jobs/s routed, the\n"+
			"master's CPU per job and share of a core, p50/p99 from Submit to Assign and to\n"+
			"Result, busy answers; then the master's memory per session.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	var rates []float64
	for _, f := range strings.Split(o.rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			fmt.Fprintf(e.stderr, "kiln loadtest: bad rate %q\n", f)
			return exitUsage
		}
		rates = append(rates, r)
	}
	if o.slaves < 1 || o.slots < 1 || o.sessions < 1 || o.keys < 1 {
		fmt.Fprintln(e.stderr, "kiln loadtest: --slaves, --slots, --sessions and --client-keys must be at least 1")
		return exitUsage
	}
	if err := o.run(ctx, e, rates); err != nil {
		fmt.Fprintf(e.stderr, "kiln loadtest: %v\n", err)
		return exitInternal
	}
	return 0
}

func (o *loadtestOptions) run(ctx context.Context, e env, rates []float64) error {
	// In memory when it can: the registry is written (and synced) once per
	// key, which on a busy disk takes minutes for a thousand keys.
	dir, err := os.MkdirTemp("/dev/shm", "kiln-loadtest-")
	if err != nil {
		dir, err = os.MkdirTemp("", "kiln-loadtest-")
	}
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := o.pki(dir)
	if err != nil {
		return err
	}
	m, err := startChildMaster(ctx, dir, o)
	if err != nil {
		return err
	}
	defer m.stop()
	cfg.ClientAddr, cfg.SlaveAddr, cfg.Master = m.clientAddr, m.slaveAddr, m.sample
	cfg.Streams = o.streams
	cfg.Quiet = o.quiet
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	start := time.Now()
	setup, err := loadtest.Start(sctx, cfg)
	if err != nil {
		return err
	}
	defer setup.Close()
	files, state := "inline", "durable state"
	if o.streams {
		files = "on file streams"
	}
	if o.inMemory {
		state = "in memory"
	}
	if o.quiet {
		files += ", quiet client sessions"
	}
	fmt.Fprintf(e.stdout, "%d slaves x %d slots, %d client sessions over %d keys, slave delay %v, sources %s, master %s; connected in %.1f s\n",
		o.slaves, o.slots, o.sessions, o.keys, o.delay, files, state, time.Since(start).Seconds())
	setup.Run(ctx, loadtest.Step{Rate: 100, Duration: time.Second}, o.drain) // warm up: slaves registered, pools filled
	idle := setup.Idle(ctx, 3*time.Second)
	fmt.Fprintf(e.stdout, "master idle with every peer connected: %.1f%% of a core\n", idle*100)
	fmt.Fprintf(e.stdout, "%9s %9s %9s %7s %6s %12s %9s %9s %9s %10s %10s %10s %10s %11s\n", "offered", "submitted", "routed/s",
		"busy", "behind", "master-cpu/j", "-idle/j", "master%", "harness%", "assign-p50", "assign-p99", "result-p50", "result-p99", "syscalls/j")
	for _, r := range rates {
		if ctx.Err() != nil {
			break
		}
		h0, t0 := selfCPU(), time.Now()
		r0, w0 := m.syscalls()
		rep := setup.Run(ctx, loadtest.Step{Rate: r, Duration: o.step}, o.drain)
		r1, w1 := m.syscalls()
		calls := "-"
		if rep.Routed > 0 && w1 > 0 {
			n := float64(rep.Routed)
			calls = fmt.Sprintf("%.1fr %.1fw", float64(r1-r0)/n, float64(w1-w0)/n)
		}
		harness := (selfCPU() - h0).Seconds() / time.Since(t0).Seconds()
		marginal := 0.0
		if rep.JobsPerS > 0 {
			marginal = (rep.MasterCPU - idle) / rep.JobsPerS * 1000
		}
		fmt.Fprintf(e.stdout, "%9.0f %9d %9.0f %7d %6d %10.3fms %7.3fms %8.0f%% %8.0f%% %10s %10s %10s %10s %11s\n", rep.Offered, rep.Submitted,
			rep.JobsPerS, rep.Busy, rep.Behind, float64(rep.MasterCPUPerJob.Microseconds())/1000, marginal, rep.MasterCPU*100, harness*100,
			round(rep.AssignP50), round(rep.AssignP99), round(rep.ResultP50), round(rep.ResultP99), calls)
	}
	if err := setup.Check(); err != nil {
		return err
	}
	peers := int64(o.sessions + o.slaves)
	_, rss := m.sample()
	fmt.Fprintf(e.stdout, "master memory: %d MiB idle, %d MiB with %d sessions (%.0f KiB per session), %d MiB after the run\n",
		setup.RSSIdle>>20, setup.RSSConnected>>20, peers, float64(setup.RSSConnected-setup.RSSIdle)/float64(peers)/1024, rss>>20)
	return nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func round(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

// pki writes a throwaway cluster directory in dir and returns the load
// test's bundles in cfg.
func (o *loadtestOptions) pki(dir string) (loadtest.Config, error) {
	cfg := loadtest.Config{Slots: o.slots, Sessions: o.sessions, SlaveDelay: o.delay}
	paths := certs.Paths(dir)
	ca, err := certs.NewCA("kiln-loadtest")
	if err != nil {
		return cfg, err
	}
	if err := ca.Save(dir); err != nil {
		return cfg, err
	}
	mb, err := ca.Issue(certs.IssueRequest{Role: certs.RoleMaster, Name: "master", Version: version, Hosts: []string{"127.0.0.1"}})
	if err != nil {
		return cfg, err
	}
	if err := certs.WriteBundle(paths.MasterBundle, mb); err != nil {
		return cfg, err
	}
	reg, err := auth.CreateRegistry(paths.Registry)
	if err != nil {
		return cfg, err
	}
	issue := func(role, name string) (*certs.Bundle, error) {
		b, err := ca.Issue(certs.IssueRequest{Role: role, Name: name, Version: version})
		if err != nil {
			return nil, err
		}
		id, err := auth.IdentityOf(b.Cert)
		if err != nil {
			return nil, err
		}
		return b, reg.Add(auth.Entry{Fingerprint: id.Fingerprint, Role: id.Role, Name: id.Name, Version: id.Version,
			Status: auth.StatusActive, Issued: time.Now(), Expires: b.Cert.NotAfter})
	}
	for i := range o.slaves {
		b, err := issue(certs.RoleSlave, fmt.Sprintf("sim-%d", i))
		if err != nil {
			return cfg, err
		}
		cfg.Slaves = append(cfg.Slaves, b)
	}
	for i := range o.keys {
		b, err := issue(certs.RoleClient, fmt.Sprintf("load-%d", i))
		if err != nil {
			return cfg, err
		}
		cfg.Clients = append(cfg.Clients, b)
	}
	return cfg, nil
}

// childMaster is `kiln master` run by the load test.
type childMaster struct {
	cmd                   *exec.Cmd
	clientAddr, slaveAddr string
}

// startChildMaster runs o.master (or this binary) as a master on two free loopback ports
// of dir's cluster and waits until it accepts connections.
func startChildMaster(ctx context.Context, dir string, o *loadtestOptions) (*childMaster, error) {
	exe, err := os.Executable()
	if o.master != "" {
		exe, err = o.master, nil
	}
	if err != nil {
		return nil, err
	}
	m := &childMaster{}
	if m.clientAddr, err = loopbackPort(); err != nil {
		return nil, err
	}
	if m.slaveAddr, err = loopbackPort(); err != nil {
		return nil, err
	}
	args := []string{"master", "--dir", dir, "--client-addr", m.clientAddr, "--slave-addr", m.slaveAddr,
		"--console", "off", "--log-level", "error", "--queue", "100000"}
	if o.inMemory {
		args = append(args, "--in-memory")
	}
	m.cmd = exec.Command(exe, args...)
	m.cmd.Stdout, m.cmd.Stderr = os.Stderr, os.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KILN_CPUPROFILE=") {
			m.cmd.Env = append(m.cmd.Env, kv)
		}
	}
	if o.profile != "" {
		m.cmd.Env = append(m.cmd.Env, "KILN_CPUPROFILE="+o.profile)
	}
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.slaveAddr, time.Second)
		if err == nil {
			c.Close()
			return m, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m.stop()
			return nil, fmt.Errorf("master did not listen on %s within 15 s", m.slaveAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sample reads the master's CPU time and resident memory from /proc.
func (m *childMaster) sample() (time.Duration, int64) {
	pid := m.cmd.Process.Pid
	var cpu time.Duration
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces): state is
		// field 3, utime 14, stime 15, in clock ticks (100 a second).
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				cpu = time.Duration(ut+st) * 10 * time.Millisecond
			}
		}
	}
	var rss int64
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				rss = kb << 10
			}
		}
	}
	return cpu, rss
}

// syscalls returns the read and write system calls the master made so far
// (/proc/PID/io syscr and syscw; zero when unreadable): a count that,
// unlike CPU time, does not grow when other processes share the cores.
func (m *childMaster) syscalls() (reads, writes int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", m.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "syscr:":
			reads = n
		case "syscw:":
			writes = n
		}
	}
	return reads, writes
}

// stop ends the master (SIGTERM, so that a CPU profile is written) and
// waits for it.
func (m *childMaster) stop() {
	m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		m.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-done
	}
}

// loopbackPort returns a loopback address with a port free at the time.
func loopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
