package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/term"

	"kiln/auth"
	"kiln/master"
	"kiln/transport/wire"
)

// wireLimits are the master's caps with the queue bound from the flags.
func wireLimits(queue int) wire.Limits {
	return wire.Limits{MaxQueue: queue}
}

// metricsServer serves a process's Prometheus metrics at /metrics, and
// /healthz (200 while the process serves) and /readyz (200 when ready()
// returns nil, else 503 with the reason) for probes.
type metricsServer struct {
	reg   *prometheus.Registry
	ready atomic.Pointer[func() error]
	stop  func()
}

// startMetricsServer serves a fresh registry, with the Go and process
// collectors and kiln_build_info{component, version, go_version}, at
// http://addr until ctx ends or stop is called (stop waits for the
// server's goroutine). With addr empty it returns nil.
func startMetricsServer(ctx context.Context, addr, component string, log *slog.Logger) (*metricsServer, error) {
	if addr == "" {
		return nil, nil
	}
	ms := &metricsServer{reg: prometheus.NewRegistry()}
	ms.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kiln_build_info",
		Help: "Always 1: the software version and Go version of this process."}, []string{"component", "version", "go_version"})
	build.WithLabelValues(component, version, runtime.Version()).Set(1)
	ms.reg.MustRegister(build)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(ms.reg, promhttp.HandlerOpts{Registry: ms.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		err := errors.New("starting")
		if f := ms.ready.Load(); f != nil {
			err = (*f)()
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", "http://"+ln.Addr().String()+"/metrics")
	stopOnCancel := context.AfterFunc(ctx, func() { hs.Close() })
	ms.stop = func() {
		stopOnCancel()
		hs.Close()
		<-done
	}
	return ms, nil
}

// setReady sets what /readyz asks.
func (ms *metricsServer) setReady(f func() error) {
	if ms != nil {
		ms.ready.Store(&f)
	}
}

func (ms *metricsServer) close() {
	if ms != nil {
		ms.stop()
	}
}

// startMetrics serves the master's metrics (see startMetricsServer). With
// addr empty it returns nil metrics, which record nothing.
func startMetrics(ctx context.Context, addr string, log *slog.Logger) (*master.Metrics, *metricsServer, error) {
	ms, err := startMetricsServer(ctx, addr, "master", log)
	if ms == nil || err != nil {
		return nil, nil, err
	}
	return master.NewMetrics(ms.reg), ms, nil
}

// logSwitch is the master's log destination; the console points it at the
// terminal while it runs so that log lines do not tear the prompt apart.
type logSwitch struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes p to the current destination, holding the lock so that no
// line is half-way out while the console switches the terminal's mode.
func (l *logSwitch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// startConsole runs the operator console when asked: mode "on", or "auto"
// with stdin a terminal ("off": never). On a terminal it switches stdin to
// raw mode and routes the master's log through the console; /quit, Ctrl-C
// and Ctrl-D call quit. On a non-terminal (mode "on") it reads commands line
// by line and the end of input only ends the console. The returned func
// restores the terminal and the log destination; the goroutine blocked
// reading stdin ends with the process.
func startConsole(ctx context.Context, e env, mode string, srv *master.Server, reg *auth.Registry, quit func()) func() {
	f, isFile := e.stdin.(*os.File)
	tty := isFile && term.IsTerminal(int(f.Fd()))
	switch {
	case mode == "off", mode == "auto" && !tty:
		return func() {}
	case mode != "on" && mode != "auto":
		fmt.Fprintf(e.stderr, "kiln master: --console %q: want auto, on or off; running headless\n", mode)
		return func() {}
	}
	con := master.NewConsole(srv, struct {
		io.Reader
		io.Writer
	}{e.stdin, e.stdout}, "console")
	if !tty {
		go func() {
			if errors.Is(con.Run(ctx), master.ErrQuit) {
				quit()
			}
		}()
		return func() {}
	}
	fd := int(f.Fd())
	if w, h, err := term.GetSize(fd); err == nil {
		con.SetSize(w, h)
	}
	// Raw mode and the log's move to the console happen under the log's
	// lock: a line logged in between would reach a raw terminal with a
	// bare "\n" and start where the last one ended.
	ls, _ := e.stderr.(*logSwitch)
	if ls == nil {
		ls = &logSwitch{w: io.Discard}
	}
	ls.mu.Lock()
	old, err := term.MakeRaw(fd)
	var prev io.Writer
	if err == nil {
		prev, ls.w = ls.w, con
	}
	ls.mu.Unlock()
	if err != nil {
		fmt.Fprintf(e.stderr, "kiln master: console: %v; running headless\n", err)
		return func() {}
	}
	restore := func() {
		ls.mu.Lock()
		ls.w = prev
		term.Restore(fd, old)
		ls.mu.Unlock()
	}
	go func() {
		con.Run(ctx)
		quit()
	}()
	var once sync.Once
	return func() { once.Do(restore) }
}
