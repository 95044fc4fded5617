package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The host and a sandbox init talk over a SOCK_SEQPACKET socket pair, one
// JSON message per packet, file descriptors riding along as SCM_RIGHTS.
//
// Protocol flow:
//
//	host -> init  msgSetup                      once, right after start
//	init -> host  msgReady                      root built, thread prepared
//	host -> init  msgRun + fds stdin, stdout, stderr, /w mount, /tmp mount
//	host -> init  msgKill                       any time; kills every job process
//	init -> host  msgDone                       all job processes reaped
//
// The host closing its end makes the init kill everything and exit.
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
	// mounts detached.
	AttachNs, StartNs, ReapNs int64
}

// sendMsg sends m with fds over c.
func sendMsg(c *net.UnixConn, m envelope, fds ...int) error {
	b, err := json.Marshal(m)
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
	var m envelope
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return m, nil, err
	}
	files, ferr := parseRights(oob[:oobn])
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
	if err := json.Unmarshal(buf[:n], &m); err != nil {
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
