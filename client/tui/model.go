// Package tui is the terminal client of Kiln, `kiln client`: a tview screen
// with the master's address and port, the bundle, buttons and function keys
// for Connect, Select file, Execute, Edit, Info and Quit, and a read-only
// console that shows each job's output as it streams.
//
// # Model and screens
//
// The state and the actions live in a plain [Model] that knows nothing of
// tview: it connects with the client library, runs the selected file,
// streams its output, cancels it, edits it and reports what the cluster can
// run. It tells an [Observer] about every change. The [UI] is a set of small
// screen constructors taking callbacks, wired to the model; it is the only
// code that touches widgets.
//
// # Concurrency
//
// The model's methods are safe for concurrent use; Connect, Execute and
// Info block until done, and the UI calls them from goroutines it owns. The
// Observer is called from those goroutines and from the model's connection
// watcher, never while the model's lock is held; it must not block. The UI's
// observer queues the changes and one pump goroutine applies them with
// Application.QueueUpdateDraw, so no other goroutine touches a widget.
package tui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/client"
	"kiln/limits"
	"kiln/transport/wire"
)

// Conn is the state of the connection with the master.
type Conn int

// Connection states.
const (
	Disconnected Conn = iota // never connected, or disconnected by the user
	Connecting               // dialing and saying Hello
	Connected                // the session is up
	Lost                     // the session ended without the user asking
)

func (c Conn) String() string {
	switch c {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Lost:
		return "connection lost"
	}
	return "not connected"
}

// Target is where and as whom to connect.
type Target struct {
	Master string // HOST:PORT of the master's client listener
	Bundle string // path of the client bundle
}

// State is a snapshot of the model.
type State struct {
	Conn    Conn
	Target  Target    // the last target connected to, or being connected to
	Name    string    // the bundle's name, once connected
	Version string    // the software version announced in Hello
	Role    string    // client or admin
	Since   time.Time // when the session started
	Err     string    // why the last connect failed or the session ended

	File  string // the selected source file, "" when none
	Tests string // the selected tests folder, "" when none (see SelectTests)

	Running  bool   // a job is being submitted or runs
	Phase    string // uploading, queued, assigned, running on SLAVE, ...
	JobID    string
	Sent     int64 // upload progress
	Total    int64
	JobStart time.Time
}

// Kind tells console text apart.
type Kind int

// Kinds of console text.
const (
	Note    Kind = iota // what the client does (connecting, submitting, ...)
	Stdout              // the program's standard output
	Stderr              // the program's standard error
	Compile             // the compiler's output
	Success             // a result line of a job that ended well
	Failure             // an error, a refusal, a job that failed
	Detail              // figures: times, memory, slave
)

// Line is a piece of console text. Output chunks need not end with a
// newline; the other kinds are whole lines.
type Line struct {
	Kind Kind
	Text string
}

// Observer is told about every change of the model. Its methods must not
// block and must not call back into the model.
type Observer interface {
	Changed(State)
	Printed(Line)
}

// Config configures a [Model].
type Config struct {
	Target  Target
	File    string           // preselected source file; may be ""
	Version string           // software version for Hello; "" means the bundle's
	Now     func() time.Time // default time.Now
	// Transport tweaks the client's session (tests use short keepalives).
	Client func(*client.Config)
}

// Model is the client's state and actions. Create it with [NewModel]; call
// [Model.Close] when done.
type Model struct {
	cfg Config
	obs Observer

	mu     sync.Mutex
	st     State
	c      *client.Client
	job    *client.Job
	cancel context.CancelFunc // cancels the submit in progress
	wg     sync.WaitGroup     // connection watchers
	closed bool
	input  Input // the program's stdin and limits for the next runs
}

// Input is what the next runs give the program besides its source: its
// standard input and the limits it asks for (zero: the master's defaults).
type Input struct {
	Stdin  string
	Limits wire.JobLimits
}

// SetInput sets the stdin and limits of the next runs.
func (m *Model) SetInput(in Input) {
	m.mu.Lock()
	m.input = in
	m.mu.Unlock()
	m.print(Note, "Next runs: %s of stdin; limits %s.", sizeText(len(in.Stdin)), limitsText(in.Limits))
}

// GetInput returns the stdin and limits of the next runs.
func (m *Model) GetInput() Input {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.input
}

func sizeText(n int) string {
	if n == 0 {
		return "none"
	}
	return limits.FormatSize(int64(n))
}

// limitsText words asked-for limits, "the master's defaults" for zeros.
func limitsText(l wire.JobLimits) string {
	var parts []string
	if l.TimeMs > 0 {
		parts = append(parts, "time "+limits.Format("time", l.TimeMs))
	}
	if l.MemoryBytes > 0 {
		parts = append(parts, "memory "+limits.FormatSize(l.MemoryBytes))
	}
	if l.OutputBytes > 0 {
		parts = append(parts, "output "+limits.FormatSize(l.OutputBytes))
	}
	if len(parts) == 0 {
		return "the master's defaults"
	}
	return strings.Join(parts, ", ") + " (the rest: the master's defaults)"
}

// NewModel returns a model that reports to obs. It starts nothing. A
// Config.File is selected as it is, even if it does not exist yet.
func NewModel(cfg Config, obs Observer) *Model {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m := &Model{cfg: cfg, obs: obs}
	m.st.Target = cfg.Target
	if cfg.File != "" {
		m.st.File = absPath(cfg.File)
	}
	return m
}

// State returns a snapshot of the model.
func (m *Model) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// update changes the state under the lock and tells the observer.
func (m *Model) update(f func(*State)) {
	m.mu.Lock()
	f(&m.st)
	st := m.st
	m.mu.Unlock()
	m.obs.Changed(st)
}

func (m *Model) print(k Kind, format string, args ...any) {
	m.obs.Printed(Line{Kind: k, Text: fmt.Sprintf(format, args...)})
}

// ErrBusy is returned by actions that need no job to be running.
var ErrBusy = errors.New("a job is running: wait for it or cancel it (Esc)")

// ErrNotConnected is returned by actions that need a session.
var ErrNotConnected = errors.New("not connected: press F2 to connect")

// Connect reads the bundle, dials the master and says Hello. It replaces a
// session that was lost; while connected it does nothing. A refusal is
// returned (and printed) as the *transport.RefusedError, in plain words.
func (m *Model) Connect(ctx context.Context, t Target) error {
	t.Master = normalizeMaster(t.Master)
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return client.ErrClosed
	case m.st.Conn == Connected || m.st.Conn == Connecting:
		m.mu.Unlock()
		return nil
	}
	m.st.Conn, m.st.Target, m.st.Err = Connecting, t, ""
	st := m.st
	m.mu.Unlock()
	m.obs.Changed(st)
	c, id, err := m.dial(ctx, t)
	if err != nil {
		m.update(func(s *State) { s.Conn, s.Err = Disconnected, err.Error() })
		m.print(Failure, "Could not connect: %v", err)
		return err
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		c.Close()
		return client.ErrClosed
	}
	m.c = c
	m.st.Conn, m.st.Name, m.st.Role, m.st.Version, m.st.Since = Connected, id.Name, id.Role, id.Version, m.cfg.Now()
	st = m.st
	m.wg.Add(1)
	m.mu.Unlock()
	go m.watch(c)
	m.obs.Changed(st)
	m.print(Success, "Connected to %s as %s (%s %s).", t.Master, id.Name, id.Role, id.Version)
	return nil
}

// dial reads the bundle and connects.
func (m *Model) dial(ctx context.Context, t Target) (*client.Client, auth.Identity, error) {
	var id auth.Identity
	if t.Master == "" {
		return nil, id, errors.New("no master address: fill in Address and Port")
	}
	if t.Bundle == "" {
		return nil, id, errors.New("no bundle: fill in Bundle (or use --bundle or KILN_BUNDLE)")
	}
	m.print(Note, "Connecting to %s with %s ...", t.Master, t.Bundle)
	b, err := certs.ReadBundle(t.Bundle)
	if err != nil {
		return nil, id, err
	}
	if id, err = auth.IdentityOf(b.Cert); err != nil {
		return nil, id, fmt.Errorf("bundle %s: %w", t.Bundle, err)
	}
	cfg := client.Config{Bundle: b, Master: t.Master, Version: m.cfg.Version}
	if m.cfg.Client != nil {
		m.cfg.Client(&cfg)
	}
	if cfg.Version != "" {
		id.Version = cfg.Version
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, cfg)
	return c, id, err
}

// watch reports the end of session c unless the user ended it.
func (m *Model) watch(c *client.Client) {
	defer m.wg.Done()
	<-c.Done()
	m.mu.Lock()
	if m.c != c {
		m.mu.Unlock()
		return // Disconnect or Close took it
	}
	m.c = nil
	m.st.Conn = Lost
	m.st.Err = fmt.Sprint(c.Err())
	st := m.st
	m.mu.Unlock()
	m.obs.Changed(st)
	m.print(Failure, "Connection lost: %v. Press F2 to reconnect.", c.Err())
}

// Disconnect ends the session; a running job is lost. It is idempotent.
func (m *Model) Disconnect() {
	m.mu.Lock()
	c := m.c
	m.c = nil
	was := m.st.Conn
	if was == Connected || was == Lost {
		m.st.Conn = Disconnected
	}
	st := m.st
	m.mu.Unlock()
	if c != nil {
		c.Close()
	}
	if was == Connected {
		m.obs.Changed(st)
		m.print(Note, "Disconnected from %s.", st.Target.Master)
	} else if was == Lost {
		m.obs.Changed(st)
	}
}

// Close disconnects and waits for the model's goroutines. Later actions fail
// with client.ErrClosed. It is idempotent.
func (m *Model) Close() {
	m.mu.Lock()
	m.closed = true
	c, cancel := m.c, m.cancel
	m.c = nil
	changed := m.st.Conn != Disconnected
	m.st.Conn = Disconnected
	st := m.st
	m.mu.Unlock()
	if changed {
		m.obs.Changed(st)
	}
	if cancel != nil {
		cancel()
	}
	if c != nil {
		c.Close()
	}
	m.wg.Wait()
}

// client returns the session, or ErrNotConnected.
func (m *Model) client() (*client.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.c == nil {
		return nil, ErrNotConnected
	}
	return m.c, nil
}

// Select makes path the selected source file. It must be a regular file.
func (m *Model) Select(path string) error {
	path = absPath(path)
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	m.update(func(s *State) { s.File = path })
	m.print(Note, "Selected %s.", path)
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// normalizeMaster adds the default port 7400 to a bare host.
func normalizeMaster(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return ""
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return net.JoinHostPort(strings.Trim(addr, "[]"), "7400")
	}
	return addr
}

// SplitMaster splits HOST:PORT for the Address and Port fields.
func SplitMaster(addr string) (host, port string) {
	if addr == "" {
		return "", "7400"
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, "7400"
	}
	return h, p
}
