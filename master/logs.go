package master

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// maxLogString is the most bytes of one peer-controlled string logged.
const maxLogString = 200

// logString makes a string a peer controls (a name, a version, a reason,
// an argument) safe to log: non-printable runes and invalid UTF-8 are
// escaped, and it is cut to maxLogString bytes with the original length
// noted, so that a 1 MiB name costs the log a line, not a megabyte.
func logString(s string) string { return truncate(s, maxLogString) }

// logArgs is logString over a list, at most 8 entries.
func logArgs(args []string) []string {
	out := make([]string, 0, min(len(args), 8))
	for _, a := range args[:min(len(args), 8)] {
		out = append(out, truncate(a, 64))
	}
	if len(args) > 8 {
		out = append(out, "...("+strconv.Itoa(len(args))+" args)")
	}
	return out
}

// truncate is logString with a limit of max bytes: the one helper every
// peer-controlled string goes through before it is logged or shown.
func truncate(s string, max int) string {
	n := len(s)
	if n > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	if !printable(s) {
		q := strconv.QuoteToGraphic(s)
		s = q[1 : len(q)-1]
	}
	if n > max {
		s += "...(" + strconv.Itoa(n) + " bytes)"
	}
	return s
}

func printable(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || r == '\\' {
			return false
		}
	}
	return true
}

// maxLimiters bounds the peers whose log rate is tracked; past it the table
// starts over (a peer then gets a fresh burst, which keeps the bound per
// peer within a factor of two).
const maxLimiters = 4096

// logLimits rate-limits what is logged about each peer: its key's
// fingerprint once known, its IP address before.
type logLimits struct {
	mu    sync.Mutex
	per   rate.Limit
	burst int
	m     map[string]*limitedHandler
}

// peerLog returns the server's logger, rate-limited for the peer named by
// key (Budget.LogPerPeer lines a second, Budget.LogBurst at once); lines
// over the rate are counted and the count is added to the next line that
// is logged.
func (s *Server) peerLog(key string) *slog.Logger {
	if host, _, err := net.SplitHostPort(key); err == nil {
		key = host
	}
	l := &s.logLimits
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) >= maxLimiters {
		l.m = map[string]*limitedHandler{}
	}
	h := l.m[key]
	if h == nil {
		h = &limitedHandler{next: s.log.Handler(), lim: rate.NewLimiter(l.per, l.burst), dropped: new(atomic.Int64)}
		l.m[key] = h
	}
	return slog.New(h)
}

// limitedHandler drops records past its limiter's rate.
type limitedHandler struct {
	next    slog.Handler
	lim     *rate.Limiter
	dropped *atomic.Int64
}

func (h *limitedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *limitedHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.lim.Allow() {
		h.dropped.Add(1)
		return nil
	}
	if n := h.dropped.Swap(0); n > 0 {
		r.AddAttrs(slog.Int64("suppressed", n))
	}
	return h.next.Handle(ctx, r)
}

func (h *limitedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &limitedHandler{next: h.next.WithAttrs(as), lim: h.lim, dropped: h.dropped}
}

func (h *limitedHandler) WithGroup(name string) slog.Handler {
	return &limitedHandler{next: h.next.WithGroup(name), lim: h.lim, dropped: h.dropped}
}
