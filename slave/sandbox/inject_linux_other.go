//go:build linux && !amd64

package sandbox

import (
	"errors"
	"runtime"
)

// Injecting system calls into a traced process is written for amd64 only;
// elsewhere filterProgram refuses, so strict mode does not start.

var errNoInject = errors.New("sandbox: no system call injection on " + runtime.GOARCH)

type tracee struct{ pid int }

func borrow(int, int, int) (*tracee, error)                 { return nil, errNoInject }
func vdsoSyscall() int                                      { return -1 }
func (t *tracee) adopt(child int) *tracee                   { return &tracee{pid: child} }
func (t *tracee) scratch(int) uintptr                       { return 0 }
func (t *tracee) write(uintptr, []byte) error               { return errNoInject }
func (t *tracee) mustCall(string, uintptr, ...uint64) error { return errNoInject }
func (t *tracee) fork() (int, error)                        { return 0, errNoInject }
func (t *tracee) installFilter([]byte) error                { return errNoInject }
func (t *tracee) restore() error                            { return errNoInject }
