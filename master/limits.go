package master

import "time"

// Budget is every bound the master puts on what peers can make it hold or
// wait for: bytes, sessions, time. Bounds come in two levels (DESIGN.md,
// second wave, note 4): per peer (or per key), nested under a global one, so
// that one key holder reaches its own bound long before it can exhaust the
// master's. docs/security.md has the table of every bound, its default and
// what happens past it. A zero field takes its default (see
// [DefaultBudget]); Budget is comparable.
//
// The per-field limits of messages (lengths of names, counts of list
// entries: wire.MaxName, wire.MaxToolchains and the rest) are checked by
// wire.Decode.
type Budget struct {
	// MaxHandshakes is how many connections may be between accept and an
	// admitted Hello at once (TLS handshake, session setup, Hello, registry
	// check). Past it a new connection is closed at once, before TLS.
	MaxHandshakes int
	// HandshakeTimeout bounds one handshake, TLS through Hello.
	HandshakeTimeout time.Duration
	// MaxSessionsPerKey is how many sessions one client or admin key may
	// hold at once; the next is refused with busy. A slave key holds one
	// (see SilentAfter).
	MaxSessionsPerKey int
	// SilentAfter is how long a slave session may go without any traffic
	// (messages or keepalive answers) before a new session of the same key
	// may replace it; a new session while the old one is live is refused
	// with already_connected.
	SilentAfter time.Duration
	// SendQueueBytes bounds the bytes of messages queued for one peer; a
	// peer whose queue would grow past it is too slow and is disconnected.
	SendQueueBytes int64
	// SendQueueBytesPerKey bounds the bytes queued for all the sessions
	// of one client or admin key; past it the session whose message does
	// not fit is disconnected.
	SendQueueBytesPerKey int64
	// MaxQueuedBytes bounds the bytes queued for all peers together; past
	// it the peer whose message does not fit is disconnected.
	MaxQueuedBytes int64
	// MessagesPerKey and MessageBurst bound the rate of control messages
	// the master reads from all the sessions of one client or admin key:
	// past it the master reads their next message later (the peer's
	// writes back up; nothing is refused), so that one key flooding
	// requests cannot starve the others.
	MessagesPerKey float64
	MessageBurst   int
	// RefuseTimeout is how long a refusal (Refused, then close) may wait
	// for the peer: a peer that does not read is closed after it, and one
	// refusal never waits on another.
	RefuseTimeout time.Duration
	// BusyRetryAfter is the retry_after sent with every busy answer.
	BusyRetryAfter time.Duration
	// LogPerPeer and LogBurst rate-limit the lines logged about one peer
	// (by key fingerprint, or by IP address before TLS): at most LogBurst
	// at once, then LogPerPeer a second; the rest are counted and the
	// count is reported with the next line logged.
	LogPerPeer float64
	LogBurst   int
	// LoadWakeEvery is how often one slave's Load reports may wake the
	// dispatcher (when its slots grow or its health comes back); between
	// two, the dispatcher's own tick (250 ms) places jobs by the new
	// figures.
	LoadWakeEvery time.Duration
	// Jobs are the bounds of the job side: uploads, jobs per client key,
	// job deadlines, output, slave quarantine.
	Jobs JobBudget
}

// DefaultBudget returns the defaults documented in docs/security.md.
func DefaultBudget() Budget {
	return Budget{
		MaxHandshakes:        64,
		HandshakeTimeout:     5 * time.Second,
		MaxSessionsPerKey:    32,
		SilentAfter:          15 * time.Second,
		SendQueueBytes:       16 << 20,
		SendQueueBytesPerKey: 64 << 20,
		MaxQueuedBytes:       1 << 30,
		MessagesPerKey:       500,
		MessageBurst:         1000,
		RefuseTimeout:        500 * time.Millisecond,
		BusyRetryAfter:       500 * time.Millisecond,
		LogPerPeer:           5,
		LogBurst:             20,
		LoadWakeEvery:        100 * time.Millisecond,
	}
}

// withDefaults fills the zero fields of b from DefaultBudget.
func (b Budget) withDefaults() Budget {
	d := DefaultBudget()
	setInt(&b.MaxHandshakes, d.MaxHandshakes)
	setDur(&b.HandshakeTimeout, d.HandshakeTimeout)
	setInt(&b.MaxSessionsPerKey, d.MaxSessionsPerKey)
	setDur(&b.SilentAfter, d.SilentAfter)
	setInt64(&b.SendQueueBytes, d.SendQueueBytes)
	setInt64(&b.SendQueueBytesPerKey, d.SendQueueBytesPerKey)
	setInt64(&b.MaxQueuedBytes, d.MaxQueuedBytes)
	if b.MessagesPerKey <= 0 {
		b.MessagesPerKey = d.MessagesPerKey
	}
	setInt(&b.MessageBurst, d.MessageBurst)
	setDur(&b.RefuseTimeout, d.RefuseTimeout)
	setDur(&b.BusyRetryAfter, d.BusyRetryAfter)
	if b.LogPerPeer <= 0 {
		b.LogPerPeer = d.LogPerPeer
	}
	setInt(&b.LogBurst, d.LogBurst)
	setDur(&b.LoadWakeEvery, d.LoadWakeEvery)
	b.Jobs = b.Jobs.withDefaults()
	return b
}

func setInt(v *int, d int) {
	if *v <= 0 {
		*v = d
	}
}

func setInt64(v *int64, d int64) {
	if *v <= 0 {
		*v = d
	}
}

func setDur(v *time.Duration, d time.Duration) {
	if *v <= 0 {
		*v = d
	}
}
