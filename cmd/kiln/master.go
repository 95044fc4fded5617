package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/master"
)

const masterHelp = `Usage: kiln master --dir D [flags]

Runs the master: accepts slaves and clients over mutual TLS, checks every key
against D/registry.json (re-read within a second of any change), and places
each job on the least-loaded slave that runs its language. SIGINT or SIGTERM
stops it cleanly: every peer is told the master is shutting down.

` + configHelp + `
Flags:
`

// masterFlags are the flags of `kiln master` (and the master part of `kiln dev`).
type masterFlags struct {
	dir, clientAddr, slaveAddr, metricsAddr, name string
	localSlots, queue                             int
	heartbeat                                     time.Duration
	logFormat, logLevel                           string
	console, localSandbox                         string
	jobLimits                                     jobLimitFlags
	durable                                       durableFlags
}

func (f *masterFlags) register(fs *flag.FlagSet) {
	fs.String("config", "", "read settings from `FILE` (one \"name = value\" per line, names as the flags'; flags win)")
	fs.StringVar(&f.dir, "dir", "", "cluster `DIR` made by 'kiln certs init' (master.bundle, registry.json)")
	fs.StringVar(&f.clientAddr, "client-addr", "127.0.0.1:7400", "listen `ADDR` for clients and admins")
	fs.StringVar(&f.slaveAddr, "slave-addr", "127.0.0.1:7401", "listen `ADDR` for slaves")
	fs.IntVar(&f.localSlots, "local-slots", 0, "run an embedded slave with `N` slots in this process (0: none)")
	fs.StringVar(&f.localSandbox, "local-sandbox", "strict", "sandbox `MODE` of the embedded slave: strict, auto or none (see 'kiln slave --help')")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9400)")
	fs.StringVar(&f.name, "name", "master", "this master's `NAME`, shown to peers")
	fs.IntVar(&f.queue, "queue", master.DefaultMaxQueue, "most jobs waiting for a slot; past it clients get 'busy'")
	fs.DurationVar(&f.heartbeat, "heartbeat", 2*time.Second, "slaves' load report `INTERVAL`; a slave silent for 3 of them is dropped")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.console, "console", "auto", "operator console on stdin: auto (when stdin is a terminal), on or off")
	f.jobLimits.register(fs)
	f.durable.register(fs)
}

func cmdMaster(ctx context.Context, e env, args []string) int {
	fs := flag.NewFlagSet("kiln master", flag.ContinueOnError)
	var f masterFlags
	f.register(fs)
	if code, done := parseFlags(fs, e, args, masterHelp); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "kiln master: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if f.dir == "" {
		fmt.Fprintln(e.stderr, "kiln master: --dir is required (make one with 'kiln certs init --dir D')")
		return exitUsage
	}
	e.stderr = &logSwitch{w: e.stderr} // the console may route logs through the terminal
	log, err := newLogger(e.stderr, f.logFormat, f.logLevel)
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln master: %v\n", err)
		return exitUsage
	}
	if err := runMaster(ctx, e, f, log, nil); err != nil {
		fmt.Fprintf(e.stderr, "kiln master: %v\n", err)
		return 1
	}
	return 0
}

// runMaster starts a master from f and serves until ctx ends. ready, when
// set, is called with the server once it listens.
func runMaster(ctx context.Context, e env, f masterFlags, log *slog.Logger, ready func(*master.Server)) error {
	paths := certs.Paths(f.dir)
	bundle, err := certs.ReadBundle(paths.MasterBundle)
	if err != nil {
		return err
	}
	reg, err := auth.OpenRegistry(paths.Registry, auth.WithLogger(log))
	if err != nil {
		return err
	}
	metrics, ms, err := startMetrics(ctx, f.metricsAddr, log)
	if err != nil {
		return err
	}
	defer ms.close()
	cfg := master.Config{
		Retention: f.durable.retention, StateMaxBytes: int64(f.durable.stateMax),
		ClientAddr: f.clientAddr, SlaveAddr: f.slaveAddr, Name: f.name, Version: version,
		Bundle: bundle, Registry: reg, HeartbeatInterval: f.heartbeat,
		Limits: wireLimits(f.queue), JobLimits: f.jobLimits.policy, Logger: log, Metrics: metrics,
	}
	if _, err := master.New(cfg); err != nil {
		return err // a bad configuration is refused before the data directory is touched
	}
	if cfg.Store, err = f.durable.open(ctx, f.dir, bundle, log); err != nil {
		return err
	}
	if cfg.Store != nil {
		defer cfg.Store.Close()
	}
	srv, err := master.New(cfg)
	if err != nil {
		return err
	}
	metrics.WatchQueue(srv.QueueLen)
	if cfg.Store != nil {
		metrics.WatchStore(cfg.Store.WriteStats)
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	stopping := ctx
	ms.setReady(func() error {
		if stopping.Err() != nil {
			return errors.New("shutting down")
		}
		return nil
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var local <-chan error
	if f.localSlots > 0 {
		lb, err := localSlaveBundle(f.dir, f.name, reg)
		if err != nil {
			cancel()
			<-done
			return err
		}
		local = startLocalSlave(ctx, lb, srv.SlaveAddr(), f.localSlots, f.localSandbox, f.jobLimits.policy, log)
	}
	if ready != nil {
		ready(srv)
	}
	stopConsole := startConsole(ctx, e, f.console, srv, reg, cancel)
	defer stopConsole()
	select {
	case err = <-done:
		cancel()
		if local != nil {
			<-local
		}
	case err = <-local:
		// The slave may end first on a clean stop too (nil): its value is
		// consumed here, so nothing waits on local again.
		cancel()
		if derr := <-done; err == nil {
			err = derr
		} else {
			err = fmt.Errorf("embedded slave: %w (its sandbox is chosen with --local-sandbox)", err)
		}
	}
	return err
}

// localSlaveBundle returns the bundle of the master's embedded slave,
// issuing it (and recording it in the registry) the first time, which needs
// the CA key in dir.
func localSlaveBundle(dir, masterName string, reg *auth.Registry) (*certs.Bundle, error) {
	path := filepath.Join(dir, "local-slave.bundle")
	if b, err := certs.ReadBundle(path); err == nil {
		return b, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ca, err := certs.LoadCA(dir)
	if err != nil {
		return nil, fmt.Errorf("--local-slots needs %s or the CA key to issue it: %w", path, err)
	}
	b, err := ca.Issue(certs.IssueRequest{Role: certs.RoleSlave, Name: masterName + "-local", Version: version})
	if err != nil {
		return nil, err
	}
	if err := recordBundle(reg, b); err != nil {
		return nil, err
	}
	return b, certs.WriteBundle(path, b)
}

// recordBundle adds the key of a freshly issued bundle to the registry.
func recordBundle(reg *auth.Registry, b *certs.Bundle) error {
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		return err
	}
	return reg.Add(auth.Entry{Fingerprint: id.Fingerprint, Role: id.Role, Name: id.Name, Version: id.Version,
		Status: auth.StatusActive, Issued: time.Now(), Expires: b.Cert.NotAfter})
}

// newLogger builds the process logger: text or JSON on w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// parseFlags parses args, printing help (exit 0) or a usage error (exit 2).
// done reports that the command should return code now.
func parseFlags(fs *flag.FlagSet, e env, args []string, help string) (code int, done bool) {
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), help)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return exitUsage, true
	}
	if cf := fs.Lookup("config"); cf != nil && cf.Value.String() != "" {
		if err := loadConfig(fs, cf.Value.String()); err != nil {
			fmt.Fprintf(e.stderr, "%s: %v\n", fs.Name(), err)
			return exitUsage, true
		}
	}
	return 0, false
}
