package client

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors callers branch on with [errors.Is].
var (
	// ErrClosed is returned by calls made after [Client.Close].
	ErrClosed = errors.New("client closed")
	// ErrConnLost wraps every error caused by the session with the master
	// ending unexpectedly (network failure, master shutdown, kick).
	ErrConnLost = errors.New("lost connection to master")
	// ErrBadInput wraps every error about a Request that was rejected before
	// anything was sent: unknown language, empty source, over a limit.
	ErrBadInput = errors.New("bad input")
)

// RequestError is the master's answer to a request it could not serve, for
// example a Submit refused with code busy or no_slave. Code is one of the
// stable wire codes (wire.CodeBusy, wire.CodeNoSlave, ...).
type RequestError struct {
	Code       string
	Message    string
	RetryAfter time.Duration // zero when the master gave no hint
}

func (e *RequestError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = e.Code
	}
	if e.RetryAfter > 0 {
		return fmt.Sprintf("master: %s (retry after %v)", msg, e.RetryAfter)
	}
	return "master: " + msg
}

// LostError reports that the session with the master ended while a job was
// still running, so its result is unknown. It matches [ErrConnLost] and
// unwraps to the cause (which may be a *transport.RefusedError when the
// master revoked the key, kicked the client or shut down).
type LostError struct {
	Job   string
	Cause error
}

func (e *LostError) Error() string {
	return fmt.Sprintf("lost connection to master while job %s was running: %v", e.Job, e.Cause)
}

// Is reports whether target is [ErrConnLost].
func (e *LostError) Is(target error) bool { return target == ErrConnLost }

// Unwrap returns the cause.
func (e *LostError) Unwrap() error { return e.Cause }

// SealError ends a sealed job whose checks failed on this side. Op is
// "wrap" when the client refused a WrapRequest (a slave certificate or
// sealing key that does not check out: the master may be trying to have
// the job's key wrapped for a key of its own), or "output" when output
// failed authentication (altered, dropped, reordered, truncated, or from
// another job). Nothing that failed is shown: the job ends with this
// error. It unwraps to the cause, which for output matches one of
// seal.ErrTampered, seal.ErrTruncated or seal.ErrWrongKey.
type SealError struct {
	Job string
	Op  string // "wrap" or "output"
	Err error
}

func (e *SealError) Error() string {
	if e.Op == "wrap" {
		return fmt.Sprintf("job %s: refused to wrap its key: %v", e.Job, e.Err)
	}
	return fmt.Sprintf("output of job %s failed authentication: %v", e.Job, e.Err)
}

// Unwrap returns the cause.
func (e *SealError) Unwrap() error { return e.Err }
