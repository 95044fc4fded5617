package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kiln/auth"
	"kiln/certs"
	"kiln/slave"
	"kiln/slave/sandbox"
	"kiln/transport"
)

const slaveHelp = `Usage: kiln slave --bundle FILE --master HOST:7401 [flags]

Runs a slave: detects gcc, g++, javac/java and python3, registers with the
master, reports its load, and compiles and runs the jobs it is given inside
a sandbox. Lost connections and temporary refusals (busy, shutdown, another
live session of this key) are retried with backoff, honouring the master's
retry hint; a refusal for good (revoked, unknown key, retired version, wrong
role, expired certificate, kicked) ends the slave with exit code 110 and one
line saying why, so that a supervisor can stop restarting it (systemd:
RestartPreventExitStatus=110). Other errors exit with 1. SIGINT or SIGTERM
drains it: it tells the master at once to send no new job, lets the jobs it
has finish (at most --drain-timeout), reports them, and exits 0.

Sandbox modes:
  strict  (default) fresh user, PID, mount, network, IPC and UTS namespaces,
          an unprivileged uid, read-only system directories, a private
          tmpfs work directory, rlimits and cgroup limits; the slave refuses
          to start when the machine cannot provide them, saying what is missing
  auto    strict when this machine supports it, else none with a warning
  none    process group and rlimits only: untrusted code runs as this user
          (development only; logs a loud warning)

Environment: KILN_BUNDLE and KILN_MASTER stand for --bundle and --master.

` + configHelp + `
Flags:
`

// slaveFlags are the flags of `kiln slave`.
type slaveFlags struct {
	bundle, master        string
	slots                 int
	loadInterval          time.Duration
	workDir, cacheDir     string
	cacheSize             string
	sharedCache           bool
	languages             string
	langSpecs             []slave.LanguageSpec // read from languages by resolve
	sandbox               string
	logFormat, logLevel   string
	backoffMin, backoffMx time.Duration
	grace                 time.Duration
	jobLimits             jobLimitFlags // the slave's own maxima
	drainTimeout          time.Duration // on SIGTERM: how long running jobs may take; 0 stops at once
	metricsAddr           string
}

func (f *slaveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.bundle, "bundle", "", "slave bundle `FILE` from 'kiln certs issue --role slave' (default $KILN_BUNDLE)")
	fs.StringVar(&f.master, "master", "", "master slave address `HOST:PORT`, e.g. 127.0.0.1:7401 (default $KILN_MASTER)")
	fs.IntVar(&f.slots, "slots", runtime.NumCPU(), "jobs run at once (`N`)")
	fs.StringVar(&f.languages, "languages", "", "languages `FILE` (docs/languages.md) adding to or replacing the built-in C, C++, Java and Python")
	fs.DurationVar(&f.loadInterval, "load-interval", 2*time.Second, "load report `INTERVAL`")
	fs.StringVar(&f.workDir, "work-dir", "", "`DIR` for job directories when no private tmpfs can hold them (--sandbox=none, or not root); emptied at start (default: a new temporary directory, removed at exit)")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "compile cache `DIR`, sealed under a per-process key and emptied at start (default: <user cache dir>/kiln/<slave name>)")
	fs.StringVar(&f.cacheSize, "cache-size", "256MiB", "compile cache bound (`SIZE`, e.g. 256MiB, 1GiB; 0 disables the cache)")
	fs.BoolVar(&f.sharedCache, "shared-compile-cache", false, "share compile cache entries between clients (faster, but 'cached: true' then tells a client that another compiled the same file; see docs/security.md)")
	fs.StringVar(&f.sandbox, "sandbox", "strict", "sandbox `MODE`: strict, auto or none (see above)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&f.backoffMin, "backoff-min", slave.DefaultBackoffMin, "first reconnect delay")
	fs.DurationVar(&f.backoffMx, "backoff-max", slave.DefaultBackoffMax, "longest reconnect delay")
	fs.DurationVar(&f.grace, "grace", slave.DefaultGrace, "how long jobs keep running while the master is away, to be reported when it is back (negative: cancel them at once)")
	fs.String("config", "", "read settings from `FILE` (one \"name = value\" per line, names as the flags'; flags win)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics, /healthz and /readyz on `ADDR` (e.g. 127.0.0.1:9401)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 2*time.Minute, "on SIGINT or SIGTERM, how long the running jobs may take to finish before the slave\nexits anyway (0: stop at once)")
	f.jobLimits.registerMax(fs, "job assigned to this slave may have", "a job over it fails with internal_error\n(keep them at least the master's --max-* flags)")
}

func cmdSlave(ctx context.Context, e env, args []string) int {
	fs := flag.NewFlagSet("kiln slave", flag.ContinueOnError)
	var f slaveFlags
	f.register(fs)
	if code, done := parseFlags(fs, e, args, slaveHelp); done {
		return code
	}
	if err := f.resolve(e, fs); err != nil {
		fmt.Fprintf(e.stderr, "kiln slave: %v\n", err)
		return exitUsage
	}
	log, err := newLogger(e.stderr, f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln slave: %v\n", err)
		return exitUsage
	}
	bundle, err := certs.ReadBundle(f.bundle)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln slave: %v\n", err)
		return 1
	}
	if err := checkBundle(f.bundle, bundle, time.Now(), certs.RoleSlave); err != nil {
		fmt.Fprintf(e.stderr, "kiln slave: %v\n", err)
		return 1
	}
	err = runSlave(ctx, f, bundle, log)
	var ref *transport.RefusedError
	switch {
	case errors.As(err, &ref):
		fmt.Fprintf(e.stderr, "kiln slave: %v\n", portHint(err, f.master, true))
		return exitRefused
	case err != nil:
		fmt.Fprintf(e.stderr, "kiln slave: %v\n", err)
		return 1
	}
	return 0
}

// resolve fills --bundle and --master from the environment and checks the
// flags.
func (f *slaveFlags) resolve(e env, fs *flag.FlagSet) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.bundle == "" {
		f.bundle = e.getenv("KILN_BUNDLE")
	}
	if f.master == "" {
		f.master = e.getenv("KILN_MASTER")
	}
	switch {
	case f.bundle == "":
		return errors.New("no bundle: use --bundle FILE or set KILN_BUNDLE")
	case f.master == "":
		return errors.New("no master: use --master HOST:PORT or set KILN_MASTER")
	case f.slots < 1:
		return fmt.Errorf("--slots %d: want at least 1", f.slots)
	case f.loadInterval <= 0:
		return fmt.Errorf("--load-interval %v: want a positive duration", f.loadInterval)
	case f.sandbox != "auto" && f.sandbox != "strict" && f.sandbox != "none":
		return fmt.Errorf("--sandbox %q: want auto, strict or none", f.sandbox)
	}
	if _, err := parseSize(f.cacheSize); err != nil {
		return fmt.Errorf("--cache-size: %w", err)
	}
	f.langSpecs = slave.BuiltinLanguages()
	if f.languages != "" {
		extra, err := slave.ReadLanguages(f.languages)
		if err != nil {
			return err
		}
		f.langSpecs = slave.MergeLanguages(f.langSpecs, extra)
	}
	return nil
}

// runSlave wires a slave from f and serves until ctx ends or the master
// refuses it for good.
func runSlave(ctx context.Context, f slaveFlags, bundle *certs.Bundle, log *slog.Logger) error {
	id, err := auth.IdentityOf(bundle.Cert)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", f.bundle, err)
	}
	runner, closeRunner, err := newRunner(ctx, f.sandbox, log)
	if err != nil {
		return err
	}
	defer closeRunner()
	workDir, cleanup, err := slaveWorkDir(f.workDir)
	if err != nil {
		return err
	}
	defer cleanup()
	cache, err := slaveCache(f, id.Name)
	if err != nil {
		return err
	}
	if f.langSpecs == nil {
		f.langSpecs = slave.BuiltinLanguages() // an embedded slave (kiln master --local-slots, kiln dev)
	}
	tcs := slaveToolchains(ctx, f.langSpecs, log)
	exec, err := slave.NewExecutor(slave.ExecConfig{Name: id.Name, WorkRoot: workDir, Runner: runner, Slots: f.slots,
		Toolchains: tcs, Languages: f.langSpecs, Cache: cache, SharedCache: f.sharedCache, Limits: f.jobLimits.policy, Logger: log})
	if err != nil {
		return err
	}
	defer exec.Close()
	s, err := slave.New(slave.Config{Bundle: bundle, Master: f.master, Version: version, Slots: f.slots,
		LoadInterval: f.loadInterval, Executor: exec, Logger: log,
		BackoffMin: f.backoffMin, BackoffMax: f.backoffMx, Grace: f.grace})
	if err != nil {
		return err
	}
	ms, err := startSlaveMetrics(ctx, f, s, log)
	if err != nil {
		return err
	}
	defer ms.close()
	log.Info("slave starting", "name", id.Name, "master", f.master, "slots", f.slots,
		"sandbox", runner.Name(), "work_dir", workDir, "private_job_dirs", exec.Private())
	if f.drainTimeout <= 0 {
		return s.Run(ctx)
	}
	return runDraining(ctx, s, f.drainTimeout, log)
}

// runDraining runs s until it ends by itself, or until ctx ends (SIGTERM):
// then s is drained, its jobs get up to timeout to finish and be reported,
// and it is stopped.
func runDraining(ctx context.Context, s *slave.Slave, timeout time.Duration, log *slog.Logger) error {
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	s.Drain()
	log.Info("draining: the master sends no new job; waiting for the running ones", "jobs", s.Busy(), "timeout", timeout)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.Busy() > 0 {
		select {
		case err := <-done:
			return err
		case <-deadline.C:
			log.Warn("drain timeout: stopping with jobs still running", "jobs", s.Busy())
			stop()
			return <-done
		case <-tick.C:
		}
	}
	log.Info("drained: every job finished; stopping")
	stop()
	return <-done
}

// newRunner picks the sandbox for mode ("auto", "strict" or "none"). The
// returned func releases it.
func newRunner(ctx context.Context, mode string, log *slog.Logger) (sandbox.Runner, func(), error) {
	if mode == "none" {
		log.Warn("SANDBOX DISABLED (--sandbox=none): running untrusted code without a sandbox: development only")
		return &sandbox.Plain{}, func() {}, nil
	}
	strict, caps, err := newStrict(ctx, log)
	if err == nil {
		log.Info("strict sandbox ready", "capabilities", caps.String())
		return strict, func() { strict.Close() }, nil
	}
	if mode == "strict" {
		return nil, nil, fmt.Errorf("strict sandbox unavailable: %w (use --sandbox=none for development only)", err)
	}
	log.Warn("SANDBOX DISABLED: the strict sandbox is unavailable here; running untrusted code without a sandbox: development only",
		"reason", err)
	return &sandbox.Plain{}, func() {}, nil
}

// newStrict creates the strict runner and checks that it works here.
func newStrict(ctx context.Context, log *slog.Logger) (*sandbox.Strict, sandbox.Capabilities, error) {
	s, err := sandbox.NewStrict(sandbox.StrictConfig{Logger: log})
	if err != nil {
		return nil, sandbox.Capabilities{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	caps, err := s.Check(ctx)
	if err != nil {
		s.Close()
		return nil, caps, err
	}
	return s, caps, nil
}

// slaveWorkDir returns the job root: dir (created if needed) or a fresh
// temporary directory that cleanup removes.
func slaveWorkDir(dir string) (string, func(), error) {
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", nil, fmt.Errorf("--work-dir: %w", err)
		}
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "kiln-slave-")
	if err != nil {
		return "", nil, err
	}
	return tmp, func() { os.RemoveAll(tmp) }, nil
}

// slaveCache opens the compile cache, or returns nil when --cache-size is 0.
func slaveCache(f slaveFlags, name string) (*slave.Cache, error) {
	size, _ := parseSize(f.cacheSize) // checked by resolve
	if size == 0 {
		return nil, nil
	}
	dir := f.cacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		dir = filepath.Join(base, "kiln", name)
	}
	c, err := slave.NewCache(dir, size)
	if err != nil {
		return nil, fmt.Errorf("--cache-dir: %w", err)
	}
	return c, nil
}

// startSlaveMetrics serves the slave's metrics when --metrics-addr is set:
// the process series, kiln_build_info and the slave's own. It outlives the
// signal that starts a drain, so that the drain can be watched.
func startSlaveMetrics(ctx context.Context, f slaveFlags, s *slave.Slave, log *slog.Logger) (*metricsServer, error) {
	ms, err := startMetricsServer(context.WithoutCancel(ctx), f.metricsAddr, "slave", log)
	if ms == nil || err != nil {
		return nil, err
	}
	ms.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kiln_slave_slots", Help: "Jobs this slave runs at once."},
			func() float64 { return float64(f.slots) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kiln_slave_jobs", Help: "Jobs given to this slave that have not finished."},
			func() float64 { return float64(s.Busy()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kiln_slave_draining", Help: "1 once the slave drains (SIGTERM): it takes no new job."},
			func() float64 {
				if s.Draining() {
					return 1
				}
				return 0
			}),
	)
	ms.setReady(func() error {
		if s.Draining() {
			return errors.New("draining")
		}
		return nil
	})
	return ms, nil
}
