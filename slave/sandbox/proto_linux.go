package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The host and a sandbox init talk over two SOCK_SEQPACKET socket pairs,
// one message per packet (JSON, or binary for run and done: see
// codec_linux.go), file descriptors riding along as
// SCM_RIGHTS: the control socket, served by a goroutine of the init, and
// the jobs socket, which the init's fork thread reads itself with blocking
// system calls, so that a run message wakes the thread that forks the job
// directly (through Go's poller and a hand-over between threads it took
// ~0.2 ms at load).
//
// Protocol flow:
//
//	control  host -> init  msgSetup                      once, right after start
//	control  init -> host  msgReady                      root built, thread prepared
//	jobs     host -> init  msgRun + fds stdin, stdout, stderr, /w mount, /tmp mount
//	control  host -> init  msgKill                       any time; kills every process of run Seq
//	jobs     init -> host  msgDone                       all job processes reaped
//
// Each run and each kill carries the run's sequence number: the sockets
// are not ordered with each other, so a kill that arrives late (after its
// run ended) must not kill the next run, and one that arrives before its
// run message must still kill it. The host closing its ends makes the init
// kill everything and exit.
const (
	msgSetup = "setup"
	msgReady = "ready"
	msgRun   = "run"
	msgKill  = "kill"
	msgDone  = "done"
)

// maxPacket bounds one protocol message; larger ones are refused.
const maxPacket = 256 << 10

// maxFDs is the most descriptors one message carries.
const maxFDs = 8

// envelope is one protocol message.
type envelope struct {
	T     string    `json:"t"`
	Seq   uint64    `json:"seq,omitempty"` // msgRun and msgKill: the run's number
	Setup *setupMsg `json:"setup,omitempty"`
	Ready *readyMsg `json:"ready,omitempty"`
	Run   *runMsg   `json:"run,omitempty"`
	Done  *doneMsg  `json:"done,omitempty"`
	Err   string    `json:"err,omitempty"`
}

// setupMsg tells a new init how to build the sandbox's file system.
type setupMsg struct {
	Binds     []bindSpec        // read-only binds, host path = sandbox path
	Symlinks  map[string]string // sandbox path -> link target
	Files     map[string]string // small files written into the root (passwd)
	Hostname  string
	JobUID    int    // uid and gid of the job inside the sandbox
	JobFilter []byte // the job's syscall filter, a sock_filter array
	NoFilter  bool   // no syscall filter at all (benchmarks only)
}

// bindSpec is one read-only bind mount.
type bindSpec struct {
	Path string
	Dir  bool
}

// readyMsg answers setupMsg.
type readyMsg struct {
	Notes []string // best-effort hardening that failed, for the report
	// Join says how jobs join their v1 cgroups: "thread" (the fork thread
	// joins around the launcher's fork: jobs are born there), "pid" (each
	// job's first process is moved by its pid; JoinNote says why) or ""
	// (v2 or no cgroups).
	Join, JoinNote string
}

// runMsg starts one job.
type runMsg struct {
	Argv     []string
	Env      []string
	Rlimits  []rlimitSpec
	Reuse    bool // the host means to reuse this sandbox: clean up carefully
	NoFilter bool // run without the syscall filter (benchmarks only)
}

// rlimitSpec is one resource limit applied to the job before it runs.
type rlimitSpec struct {
	Resource int
	Cur, Max uint64
}

// doneMsg reports how a job ended.
type doneMsg struct {
	StartErr  string // the program could not be started
	Status    uint32 // wait status of the job's first process
	WallNs    int64  // from fork to the first process's exit
	CPUNs     int64  // user+system time of every process of the job
	MaxRSSKiB int64  // largest resident set of any one process
	Clean     bool   // every process reaped and mounts removed
	Filtered  bool   // the job ran under the syscall filter
	// Times of the init's steps (StrictConfig.Trace): attaching the mounts,
	// fork to the job's release, its exit to every process reaped and the
	// mounts detached; within the start, the v1 cgroup joins.
	AttachNs, StartNs, ReapNs, JoinNs int64
}

// sendMsg sends m with fds over c.
func sendMsg(c *net.UnixConn, m envelope, fds ...int) error {
	b, err := encodeMsg(m)
	if err != nil {
		return err
	}
	if len(b) > maxPacket {
		return fmt.Errorf("sandbox: %s message of %d bytes exceeds %d", m.T, len(b), maxPacket)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// recvBuf is a buffer for recvMsg. Each end of a socket keeps one and
// reads one message at a time into it: the protocol's messages are
// decoded into fresh values, so it is free again when recvMsg returns.
type recvBuf []byte

func newRecvBuf() recvBuf { return make(recvBuf, maxPacket+1) }

// recvMsg reads one message from c into buf. Received descriptors are
// returned as files (close-on-exec); the caller owns them.
func recvMsg(c *net.UnixConn, buf recvBuf) (envelope, []*os.File, error) {
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return envelope{}, nil, err
	}
	return parseMsg(buf[:n], oob[:oobn], flags)
}

// recvMsgFD is recvMsg on a blocking socket descriptor, read by the
// calling thread itself.
func recvMsgFD(fd int, buf recvBuf) (envelope, []*os.File, error) {
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return envelope{}, nil, err
		}
		return parseMsg(buf[:n], oob[:oobn], flags)
	}
}

// sendMsgFD is sendMsg on a blocking socket descriptor.
func sendMsgFD(fd int, m envelope) error {
	b, err := encodeMsg(m)
	if err != nil {
		return err
	}
	if len(b) > maxPacket {
		return fmt.Errorf("sandbox: %s message of %d bytes exceeds %d", m.T, len(b), maxPacket)
	}
	for {
		err = unix.Sendmsg(fd, b, nil, nil, 0)
		if err != unix.EINTR {
			return err
		}
	}
}

// parseMsg decodes one received packet and its descriptors.
func parseMsg(b, oob []byte, flags int) (envelope, []*os.File, error) {
	var m envelope
	n := len(b)
	files, ferr := parseRights(oob)
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeFiles(files)
		return m, nil, errors.New("sandbox: truncated protocol message")
	}
	if n == 0 {
		closeFiles(files)
		return m, nil, errEOF
	}
	if ferr != nil {
		closeFiles(files)
		return m, nil, ferr
	}
	if err := decodeMsg(b, &m); err != nil {
		closeFiles(files)
		return m, nil, fmt.Errorf("sandbox: bad protocol message: %w", err)
	}
	return m, files, nil
}

var errEOF = errors.New("sandbox: peer closed")

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, cm := range msgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "fd"))
		}
	}
	return files, nil
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
