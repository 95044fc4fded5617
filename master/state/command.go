package state

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"kiln/transport/wire"
)

// Kind names a [Command]. Values are stored in the log: stable and
// append-only, never renumber.
type Kind uint8

// Command kinds. Each comment names the fields the command reads.
const (
	// KindSubmit admits a job: New (owner, submit, payload),
	// MaxJobs (cap on unfinished jobs), MaxBytes (cap on the state's bytes).
	KindSubmit Kind = 1
	// KindAssign gives the queued Job at Attempt to Slave.
	KindAssign Kind = 2
	// KindResult ends Job's Attempt with Result and Output.
	KindResult Kind = 3
	// KindRequeue puts Job's assigned Attempt back in the queue as
	// Attempt+1 (its slave was lost); Reason is for the log.
	KindRequeue Kind = 4
	// KindCancel ends a queued Job at once (status cancelled, Reason as
	// detail) or marks an assigned one CancelRequested.
	KindCancel Kind = 5
	// KindDeliver records that Job's result reached its client.
	KindDeliver Kind = 6
	// KindDrain and KindUndrain set or clear Slave's admin drain.
	KindDrain   Kind = 7
	KindUndrain Kind = 8
	// KindQuarantine keeps Slave out of dispatch until Until and counts
	// a strike; a zero Until lifts the quarantine (strikes are kept).
	KindQuarantine Kind = 9
	// KindExpire drops ended jobs that finished before Now-Retention,
	// then ended jobs while the state holds more than MaxBytes: the
	// oldest of the owner whose ended jobs hold the most bytes first.
	KindExpire Kind = 10
	// KindWraps stores Wraps, the content key of the sealed Job wrapped
	// ahead by its client for slaves; a job that has wraps refuses more.
	KindWraps Kind = 11
	// KindStop marks a clean Close: every command proposed before it is
	// in the log. The state is clean while it is the last command.
	KindStop Kind = 12
	// KindRestart, written by Open when the state is not clean (the last
	// run crashed), moves every queued job to its next attempt: an Assign
	// proposed lazily may have been lost with its slave already running
	// that attempt, so the attempt number is never used twice.
	KindRestart Kind = 13
)

var kindNames = map[Kind]string{
	KindSubmit: "submit", KindAssign: "assign", KindResult: "result", KindRequeue: "requeue",
	KindCancel: "cancel", KindDeliver: "deliver", KindDrain: "drain", KindUndrain: "undrain",
	KindQuarantine: "quarantine", KindExpire: "expire", KindWraps: "wraps",
	KindStop: "stop", KindRestart: "restart",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Command is one change to the state, as stored in one raft log entry.
// Everything Apply needs is in it, stamped by the proposer: Apply reads
// no clock and no counter outside the state.
type Command struct {
	Kind    Kind      `msgpack:"kind"`
	Now     time.Time `msgpack:"now"`
	Job     string    `msgpack:"job,omitempty"`
	Attempt int       `msgpack:"attempt,omitempty"`
	Slave   string    `msgpack:"slave,omitempty"`
	Reason  string    `msgpack:"reason,omitempty"`

	New      *Job  `msgpack:"new,omitempty"`
	MaxJobs  int   `msgpack:"max_jobs,omitempty"`
	MaxBytes int64 `msgpack:"max_bytes,omitempty"`

	Result *wire.Result `msgpack:"result,omitempty"`
	Output []Chunk      `msgpack:"output,omitempty"`

	Wraps []Wrap `msgpack:"wraps,omitempty"`

	Until     time.Time     `msgpack:"until,omitempty"`
	Retention time.Duration `msgpack:"retention,omitempty"`
}

// Errors Apply returns. They are part of the state's determinism: the
// same command on the same state fails the same way on every replica.
var (
	// ErrNotFound: no job with that id (never submitted, or expired).
	ErrNotFound = errors.New("no such job")
	// ErrStale: the command names an attempt or state the job has left
	// (a late message about an earlier attempt).
	ErrStale = errors.New("stale attempt")
	// ErrEnded: the job has already ended.
	ErrEnded = errors.New("job already ended")
	// ErrQueueFull: Submit past Command.MaxJobs unfinished jobs.
	ErrQueueFull = errors.New("too many unfinished jobs")
	// ErrFull: Submit past Command.MaxBytes even with every ended job
	// dropped.
	ErrFull = errors.New("durable state full")
	// ErrBadCommand: a log entry that does not decode or names no known
	// kind. At start, any such entry makes Open refuse the data dir.
	ErrBadCommand = errors.New("bad command")
)

// Encode returns the command's encoding (the bytes msgpack.Marshal
// writes), into a buffer of about its size: Marshal's grew from nothing,
// copying a Submit up to eight times (2.37 → 1.40 MB allocated for the
// 885 commands of a bench run's log).
func (c *Command) Encode() ([]byte, error) {
	buf := bytes.NewBuffer(make([]byte, 0, c.sizeHint()))
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sizeHint is about the size of the command's encoding: its byte fields
// and room for the rest.
func (c *Command) sizeHint() int {
	n := 256
	if j := c.New; j != nil {
		n += 512 + len(j.Source) + len(j.Stdin) + len(j.Submit.ClientKey) + len(j.Submit.KeyNonce) + len(j.Submit.WrapNonce)
		for _, w := range j.Submit.Wraps {
			n += 64 + len(w.Key) + len(w.SealKey) + len(w.Slave)
		}
	}
	if r := c.Result; r != nil {
		n += 256 + len(r.CompileOutput) + len(r.Key) + len(r.Verdict) + len(r.Detail)
	}
	for _, o := range c.Output {
		n += 32 + len(o.Data) + len(o.Key)
	}
	for _, w := range c.Wraps {
		n += 32 + len(w.Key) + len(w.Slave)
	}
	return n
}

// DecodeCommand parses a command written by [Command.Encode].
func DecodeCommand(b []byte) (_ *Command, err error) {
	// msgpack v5.4.1 can panic on malformed input (see Restore).
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrBadCommand, p)
		}
	}()
	var c Command
	if err := msgpack.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	if _, ok := kindNames[c.Kind]; !ok {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrBadCommand, c.Kind)
	}
	return &c, nil
}

// A raft log entry holds a batch of commands (group commit: the commands
// proposed while the previous entry was being written go in one entry and
// one fsync): a msgpack array of encoded commands.

// encodeEntry returns the log entry of a batch of encoded commands: the
// array's header and the commands as they were encoded at Propose, in one
// allocation and one copy (the bytes msgpack.Marshal of the commands as
// []msgpack.RawMessage gives, without its reflection and buffer growth:
// TestEntryEncoding).
func encodeEntry(cmds [][]byte) []byte {
	n := 5
	for _, c := range cmds {
		n += len(c)
	}
	b := appendArrayLen(make([]byte, 0, n), len(cmds))
	for _, c := range cmds {
		b = append(b, c...)
	}
	return b
}

// appendArrayLen appends a msgpack array header for n elements.
func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return append(b, 0xdc, byte(n>>8), byte(n))
	}
	return append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// DecodeEntry parses a raft log entry into its commands, in one pass over
// the entry (no copy of each command's bytes first).
func DecodeEntry(b []byte) (_ []*Command, err error) {
	// msgpack v5.4.1 can panic on malformed input (see Restore).
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: entry: %v", ErrBadCommand, p)
		}
	}()
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return nil, fmt.Errorf("%w: entry: %v", ErrBadCommand, err)
	}
	if n < 0 || n > len(b) { // nil, or more commands than bytes
		return nil, fmt.Errorf("%w: entry: %d commands in %d bytes", ErrBadCommand, n, len(b))
	}
	out := make([]*Command, n)
	for i := range out {
		c := new(Command)
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("command %d of %d: %w: %v", i+1, n, ErrBadCommand, err)
		}
		if _, ok := kindNames[c.Kind]; !ok {
			return nil, fmt.Errorf("command %d of %d: %w: unknown kind %d", i+1, n, ErrBadCommand, c.Kind)
		}
		out[i] = c
	}
	return out, nil
}
