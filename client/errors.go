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
