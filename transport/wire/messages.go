package wire

import (
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// ProtocolVersion is the version of the Kiln wire protocol spoken by this
// build. A peer announcing another version in its Hello is refused with
// [CodeBadHello].
const ProtocolVersion = 1

// MsgType identifies the body of an [Envelope]. Values are stable and
// append-only: never renumber, never reuse.
type MsgType uint8

// Message types. Each comment names the body type and the direction.
const (
	// MsgHello carries [Hello], dialer → master, first message on the control stream.
	MsgHello MsgType = 1
	// MsgWelcome carries [Welcome], master → dialer, answer to a valid Hello.
	MsgWelcome MsgType = 2
	// MsgRefused carries [Refused], master → peer, then the master closes the session.
	MsgRefused MsgType = 3
	// MsgRegister carries [Register], slave → master, right after Welcome.
	MsgRegister MsgType = 4
	// MsgLoad carries [Load], slave → master, every load interval.
	MsgLoad MsgType = 5
	// MsgSubmit carries [Submit], client → master; envelope ID is the client's request id.
	MsgSubmit MsgType = 6
	// MsgAccepted carries [Accepted], master → client, same envelope ID as the Submit.
	MsgAccepted MsgType = 7
	// MsgError carries [Error], master → client, answer to a request that failed (same envelope ID).
	MsgError MsgType = 8
	// MsgJobState carries [JobState], master → client, on every lifecycle change of a job.
	MsgJobState MsgType = 9
	// MsgAssign carries [Assign], master → slave; the source (and stdin)
	// travel inline in it ([Inline]) or follow on file streams.
	MsgAssign MsgType = 10
	// MsgOutput carries [Output], slave → master → client, a chunk of output as it is produced.
	MsgOutput MsgType = 11
	// MsgResult carries [Result], slave → master → client, the end of one job.
	MsgResult MsgType = 12
	// MsgCancel carries [Cancel], client → master → slave.
	MsgCancel MsgType = 13
	// MsgInfoRequest carries [InfoRequest], client → master; envelope ID correlates the reply.
	MsgInfoRequest MsgType = 14
	// MsgInfo carries [Info], master → client, same envelope ID as the request.
	MsgInfo MsgType = 15
	// MsgAdminRequest carries [AdminRequest], admin → master (admin keys only).
	MsgAdminRequest MsgType = 16
	// MsgAdminReply carries [AdminReply], master → admin, same envelope ID.
	MsgAdminReply MsgType = 17
	// MsgWrapRequest carries [WrapRequest], master → client: wrap the job's content key for a slave.
	MsgWrapRequest MsgType = 18
	// MsgWrapped carries [Wrapped], client → master, the answer to a WrapRequest.
	MsgWrapped MsgType = 19
	// MsgFileHeader carries [FileHeader], sender → receiver, the first frame of
	// every file stream (never on the control stream).
	MsgFileHeader MsgType = 20
	// MsgAttach carries [Attach], client → master; envelope ID correlates the reply.
	MsgAttach MsgType = 21
	// MsgAttached carries [Attached], master → client, same envelope ID as
	// the Attach; the job's messages follow as for a job the session submitted.
	MsgAttached MsgType = 22
	// MsgListJobs carries [ListJobs], client → master; envelope ID correlates the reply.
	MsgListJobs MsgType = 23
	// MsgJobList carries [JobList], master → client, same envelope ID as the ListJobs.
	MsgJobList MsgType = 24
	// MsgWraps carries [Wraps], client → master: a sealed job's content
	// key wrapped ahead for slaves; answered by Accepted or Error (same
	// envelope ID).
	MsgWraps MsgType = 25
	// MsgTestResult carries [TestResult], slave → master → client, the
	// verdict of one case of a test batch as soon as it is known.
	MsgTestResult MsgType = 26
)

// Refusal codes sent in [Refused] and [Error]. Stable, append-only strings.
const (
	CodeUnknownKey     = "unknown_key"
	CodeRevokedKey     = "revoked_key"
	CodeVersionRetired = "version_retired"
	CodeRoleMismatch   = "role_mismatch"
	CodeBadHello       = "bad_hello"
	CodeBusy           = "busy"
	CodeKicked         = "kicked"
	CodeShutdown       = "shutdown"
	CodeBadRequest     = "bad_request"
	CodeNoSlave        = "no_slave"
	CodeTooLarge       = "too_large"
	CodeForbidden      = "forbidden"
	CodeNotFound       = "not_found"
	// CodeAlreadyConnected refuses a second session of a slave key whose
	// session is live; RetryAfterMs says when to try again.
	CodeAlreadyConnected = "already_connected"
	// CodeReplaced ends a session that went silent and was replaced by a
	// new session of the same key.
	CodeReplaced = "replaced"
	// CodeCertExpired ends a session whose certificate expired.
	CodeCertExpired = "certificate_expired"
)

// Role names carried in Hello and certificates.
const (
	RoleSlave  = "slave"
	RoleClient = "client"
	RoleAdmin  = "admin"
)

// Hello opens every session.
type Hello struct {
	Proto    int      `msgpack:"proto"`
	Role     string   `msgpack:"role"`
	Name     string   `msgpack:"name"`
	Version  string   `msgpack:"version"`
	Features []string `msgpack:"features,omitempty"`
}

// Limits are the master's caps, announced in Welcome.
type Limits struct {
	MaxFrame  int   `msgpack:"max_frame"`
	MaxSource int64 `msgpack:"max_source"`
	MaxStdin  int64 `msgpack:"max_stdin"`
	MaxOutput int64 `msgpack:"max_output"`
	MaxQueue  int   `msgpack:"max_queue"`
}

// Welcome accepts a peer.
type Welcome struct {
	SessionID   string `msgpack:"session"`
	HeartbeatMs int64  `msgpack:"heartbeat_ms"`
	Master      string `msgpack:"master"`
	Limits      Limits `msgpack:"limits"`
	// Features are the optional features of the Hello that the master
	// speaks too (see [FeatureTests]); a peer uses none other.
	Features []string `msgpack:"features,omitempty"`
}

// Refused rejects a peer; the sender closes the session right after.
type Refused struct {
	Code         string `msgpack:"code"`
	Reason       string `msgpack:"reason"`
	RetryAfterMs int64  `msgpack:"retry_after_ms,omitempty"`
}

// Toolchain is one language a slave can run.
type Toolchain struct {
	Language string `msgpack:"lang" json:"language"`     // c, cpp, java, python
	Compiler string `msgpack:"compiler" json:"compiler"` // e.g. "gcc 12.2.0"
	Path     string `msgpack:"path" json:"path"`
	// Extensions are the source file extensions of the language (".cpp"),
	// Options the compiler options a submitter may pick, and Hash the
	// hash of the slave's descriptor of the language (see [Submit.Options]).
	Extensions []string `msgpack:"ext,omitempty" json:"extensions,omitempty"`
	Options    []string `msgpack:"options,omitempty" json:"options,omitempty"`
	Hash       string   `msgpack:"hash,omitempty" json:"hash,omitempty"`
}

// Register describes a slave, sent once after Welcome.
type Register struct {
	Toolchains []Toolchain `msgpack:"toolchains"`
	OS         string      `msgpack:"os"`
	Kernel     string      `msgpack:"kernel"`
	Arch       string      `msgpack:"arch"`
	CPUs       int         `msgpack:"cpus"`
	MemBytes   uint64      `msgpack:"mem"`
	Slots      int         `msgpack:"slots"`
	Sandbox    string      `msgpack:"sandbox"`
	SealKey    []byte      `msgpack:"seal_key,omitempty"` // X25519 public key, 32 bytes
	// Held are the jobs this slave kept through the loss of its previous
	// session (see [HeldJob]); their Output and Result follow Register.
	Held []HeldJob `msgpack:"held,omitempty"`
}

// Load is a slave's periodic load report.
type Load struct {
	CPUPercent float64 `msgpack:"cpu" json:"cpu_percent"`
	Load1      float64 `msgpack:"load1" json:"load1"`
	Load5      float64 `msgpack:"load5" json:"load5"`
	Load15     float64 `msgpack:"load15" json:"load15"`
	MemUsed    uint64  `msgpack:"mem_used" json:"mem_used"`
	MemTotal   uint64  `msgpack:"mem_total" json:"mem_total"`
	Running    int     `msgpack:"running" json:"running"`
	Slots      int     `msgpack:"slots" json:"slots"`
	// Health is empty while the slave can run jobs, else why it cannot
	// (for example its work directory is not writable or its disk is
	// full); the master then places no job on it.
	Health string `msgpack:"health,omitempty" json:"health,omitempty"`
}

// JobLimits are the per-job limits a client asks for (zero means default).
type JobLimits struct {
	TimeMs      int64 `msgpack:"time_ms,omitempty"`
	MemoryBytes int64 `msgpack:"memory,omitempty"`
	OutputBytes int64 `msgpack:"output,omitempty"`
}

// Submit asks the master to run one program. The source and, when
// StdinSize > 0, the stdin travel inline in it ([Inline]) or follow on
// file streams whose header JobID is the envelope ID of this Submit, as a
// decimal string.
type Submit struct {
	Language   string    `msgpack:"lang"`
	FileName   string    `msgpack:"file"`
	SourceSize int64     `msgpack:"source_size"`
	StdinSize  int64     `msgpack:"stdin_size"`
	Limits     JobLimits `msgpack:"limits"`
	Sealed     bool      `msgpack:"sealed,omitempty"`
	ClientKey  []byte    `msgpack:"client_key,omitempty"` // the X25519 public key sealed output keys are wrapped for (one per bundle, docs/security.md)
	// KeyNonce, in a sealed job, is the nonce the client derived the
	// job's content key and ClientKey from (see docs/security.md); the
	// master keeps it and hands it back in [Attached].
	KeyNonce []byte `msgpack:"key_nonce,omitempty"`
	// Wraps, in a sealed job, are the content key wrapped by the client
	// for slaves it expects the job may go to, bound to WrapNonce (32
	// random bytes) instead of the job id the client does not know yet
	// (seal.SubmitInputContext), so that the master can assign the job to
	// one of them without a WrapRequest. At most MaxWraps; only to a
	// master that echoed [FeatureSubmitWraps].
	Wraps     []KeyWrap `msgpack:"wraps,omitempty"`
	WrapNonce []byte    `msgpack:"wrap_nonce,omitempty"`
	// Options are compiler options among those the language allows
	// ([Toolchain.Options]), for example "-std=c++20".
	Options []string `msgpack:"options,omitempty"`
	// Tests, when above zero, makes the job a test batch (see
	// [TestBundle]): the stdin file holds the bundle of this many cases.
	// Only a session that negotiated [FeatureTests] may send it.
	Tests int `msgpack:"tests,omitempty"`
	// Inline carries small files in this message instead of on file
	// streams; only a session that negotiated [FeatureInline] may send it.
	Inline `msgpack:",inline"`
}

// Inline carries a job's small files inside its [Submit] or [Assign]
// (feature [FeatureInline]), instead of a file stream each: a file is
// inline when its field is not empty, and then travels on no stream.
// SourceSize (StdinSize) must equal its length, and both files together
// are at most [MaxInline] bytes. SourceSHA256 and StdinSHA256 are the
// SHA-256 sums of the inline files, required unless the job is sealed
// (a sealed file's AEAD authenticates it end to end); see [CheckInline].
type Inline struct {
	Source       []byte `msgpack:"source,omitempty"`
	SourceSHA256 []byte `msgpack:"source_sha256,omitempty"`
	Stdin        []byte `msgpack:"stdin,omitempty"`
	StdinSHA256  []byte `msgpack:"stdin_sha256,omitempty"`
}

// Accepted tells the client its job is queued.
type Accepted struct {
	JobID    string `msgpack:"job"`
	Position int    `msgpack:"pos"`
}

// Error answers a request that failed.
type Error struct {
	Code         string `msgpack:"code"`
	Message      string `msgpack:"msg"`
	RetryAfterMs int64  `msgpack:"retry_after_ms,omitempty"`
}

// Job lifecycle states carried in JobState.
const (
	StateQueued   = "queued"
	StateAssigned = "assigned"
	StateRunning  = "running"
	StateRequeued = "requeued" // the slave was lost; earlier output of this job is void
	StateDone     = "done"
	StateFailed   = "failed"
)

// JobState reports a lifecycle change.
type JobState struct {
	JobID   string `msgpack:"job"`
	State   string `msgpack:"state"`
	Slave   string `msgpack:"slave,omitempty"`
	Attempt int    `msgpack:"attempt"`
	Detail  string `msgpack:"detail,omitempty"`
}

// Assign hands a job to a slave. Its files travel inline in it
// ([Inline], to a slave that announced [FeatureInline]) or follow on file
// streams.
type Assign struct {
	JobID      string    `msgpack:"job"`
	Attempt    int       `msgpack:"attempt"`
	Language   string    `msgpack:"lang"`
	FileName   string    `msgpack:"file"`
	SourceSize int64     `msgpack:"source_size"`
	StdinSize  int64     `msgpack:"stdin_size"`
	Limits     JobLimits `msgpack:"limits"`
	Sealed     bool      `msgpack:"sealed,omitempty"`
	WrappedKey []byte    `msgpack:"wrapped_key,omitempty"`
	// WrapNonce, when set, says WrappedKey came with the Submit and is
	// bound to this nonce (seal.SubmitInputContext) rather than to the job
	// id (seal.InputContext). Only to a slave that announced
	// [FeatureSubmitWraps].
	WrapNonce []byte `msgpack:"wrap_nonce,omitempty"`
	ClientKey []byte `msgpack:"client_key,omitempty"`
	// Owner is the fingerprint of the submitting client's key; the slave
	// keeps its compile cache apart per owner.
	Owner string `msgpack:"owner,omitempty"`
	// Options and Tests are the Submit's.
	Options []string `msgpack:"options,omitempty"`
	Tests   int      `msgpack:"tests,omitempty"`
	// Inline carries the job's files when they are small (see [Inline]).
	Inline `msgpack:",inline"`
}

// Output stream identifiers.
const (
	StreamStdout  = 1
	StreamStderr  = 2
	StreamCompile = 3
)

// Output is a chunk of a job's output, sent as it is produced.
type Output struct {
	JobID   string `msgpack:"job"`
	Attempt int    `msgpack:"attempt"`
	Stream  uint8  `msgpack:"stream"`
	Seq     uint64 `msgpack:"seq"`
	Data    []byte `msgpack:"data"`
	// Key, in a sealed job, is the attempt's output key wrapped for
	// Assign.ClientKey; set on the first Output of each stream of an
	// attempt. Data is then one message of a seal.Sequence.
	Key []byte `msgpack:"key,omitempty"`
}

// Result statuses.
const (
	StatusOK            = "ok"
	StatusCompileError  = "compile_error"
	StatusRuntimeError  = "runtime_error"
	StatusTimeLimit     = "time_limit"
	StatusMemoryLimit   = "memory_limit"
	StatusOutputLimit   = "output_limit"
	StatusInternalError = "internal_error"
	StatusCancelled     = "cancelled"
	// StatusNoSlave ends a queued job when every connected slave that runs
	// its language has been drained by an admin.
	StatusNoSlave = "no_slave"
)

// Result ends a job. Stdout and stderr travelled in Output messages.
type Result struct {
	JobID         string `msgpack:"job"`
	Attempt       int    `msgpack:"attempt"`
	Status        string `msgpack:"status"`
	ExitCode      int    `msgpack:"exit_code"`
	Signal        int    `msgpack:"signal,omitempty"`
	CompileOutput []byte `msgpack:"compile_output,omitempty"`
	WallMs        int64  `msgpack:"wall_ms"`
	CPUMs         int64  `msgpack:"cpu_ms"`
	MemoryKiB     int64  `msgpack:"memory_kib"`
	Slave         string `msgpack:"slave"`
	Language      string `msgpack:"lang"`
	Compiler      string `msgpack:"compiler"`
	Cached        bool   `msgpack:"cached"`
	Detail        string `msgpack:"detail,omitempty"`
	StdoutBytes   int64  `msgpack:"stdout_bytes"`
	StderrBytes   int64  `msgpack:"stderr_bytes"`
	// SlaveFault, with StatusInternalError, says the failure is the
	// slave's own (its disk, its toolchain, its sandbox), not the job's:
	// the master runs the job again on another slave once and counts the
	// failure against this slave.
	SlaveFault bool `msgpack:"slave_fault,omitempty"`
	// Key, in a sealed job, is the attempt's output key wrapped for
	// Assign.ClientKey; CompileOutput is then sealed under it (label
	// seal.LabelCompile). Absent only when the slave could not open the
	// job's content key, and then nothing of the job is output.
	Key []byte `msgpack:"key,omitempty"`
	// Verdict, in a sealed job, is [Result.VerdictBytes] sealed under the
	// output key (label "result"), so that the master cannot alter the
	// status, exit code, times or sizes without the client noticing.
	Verdict []byte `msgpack:"verdict,omitempty"`
	// Tests summarises a test batch (see [TestSummary]).
	Tests *TestSummary `msgpack:"tests,omitempty"`
}

// verdict is the part of a Result the slave vouches for in a sealed job:
// everything but the routing fields (job, attempt, slave) and what is
// sealed on its own (compile output, key).
type verdict struct {
	Status      string `msgpack:"status"`
	ExitCode    int    `msgpack:"exit_code"`
	Signal      int    `msgpack:"signal"`
	WallMs      int64  `msgpack:"wall_ms"`
	CPUMs       int64  `msgpack:"cpu_ms"`
	MemoryKiB   int64  `msgpack:"memory_kib"`
	Language    string `msgpack:"lang"`
	Compiler    string `msgpack:"compiler"`
	Cached      bool   `msgpack:"cached"`
	Detail      string `msgpack:"detail"`
	StdoutBytes int64  `msgpack:"stdout_bytes"`
	StderrBytes int64  `msgpack:"stderr_bytes"`
	// Tests is absent from jobs without tests, so that their encoding
	// did not change.
	Tests *TestSummary `msgpack:"tests,omitempty"`
}

// VerdictBytes is the canonical encoding of the fields of r a slave vouches
// for; two Results with the same verdict encode to the same bytes.
func (r *Result) VerdictBytes() []byte {
	b, err := msgpack.Marshal(verdict{
		Status: r.Status, ExitCode: r.ExitCode, Signal: r.Signal, WallMs: r.WallMs, CPUMs: r.CPUMs,
		MemoryKiB: r.MemoryKiB, Language: r.Language, Compiler: r.Compiler, Cached: r.Cached,
		Detail: r.Detail, StdoutBytes: r.StdoutBytes, StderrBytes: r.StderrBytes, Tests: r.Tests,
	})
	if err != nil {
		panic("wire: verdict encoding: " + err.Error()) // a fixed struct of plain fields cannot fail
	}
	return b
}

// Cancel stops a job.
type Cancel struct {
	JobID string `msgpack:"job"`
}

// InfoRequest asks what the cluster can run.
type InfoRequest struct {
	// SealFor, when set, asks for the certificates of the connected
	// slaves with a sealing key that run this language ([Info.SealSlaves]).
	SealFor string `msgpack:"seal_for,omitempty"`
}

// LanguageInfo summarises one language across the cluster.
type LanguageInfo struct {
	Language  string   `msgpack:"lang"`
	Compilers []string `msgpack:"compilers"`
	Slaves    int      `msgpack:"slaves"`
	FreeSlots int      `msgpack:"free_slots"`
	// DefaultLimits and MaxLimits are the master's job limits for the
	// language: what a job asking for none gets, and the most it may ask.
	DefaultLimits JobLimits `msgpack:"default_limits"`
	MaxLimits     JobLimits `msgpack:"max_limits"`
	// Extensions and Options are the union of what the slaves announced.
	Extensions []string `msgpack:"ext,omitempty"`
	Options    []string `msgpack:"options,omitempty"`
}

// Info answers an InfoRequest.
type Info struct {
	Master    string         `msgpack:"master"`
	Version   string         `msgpack:"version"`
	Slaves    int            `msgpack:"slaves"`
	FreeSlots int            `msgpack:"free_slots"`
	Queue     int            `msgpack:"queue"`
	Languages []LanguageInfo `msgpack:"languages"`
	// SealSlaves answers InfoRequest.SealFor.
	SealSlaves []SealSlave `msgpack:"seal_slaves,omitempty"`
}

// AdminRequest runs one admin command, e.g. Args = ["server", "list"].
type AdminRequest struct {
	Args []string `msgpack:"args"`
}

// AdminReply answers an AdminRequest. JSON holds the machine-readable form.
type AdminReply struct {
	Text string `msgpack:"text"`
	JSON []byte `msgpack:"json,omitempty"`
}

// WrapRequest asks a client to wrap a job's content key for a slave's sealing key.
type WrapRequest struct {
	JobID   string `msgpack:"job"`
	Slave   string `msgpack:"slave"`
	SealKey []byte `msgpack:"seal_key"`
	// SlaveCert is the slave's TLS certificate (DER), whose CA-signed
	// extension holds SealKey; the client checks it before wrapping.
	SlaveCert []byte `msgpack:"slave_cert,omitempty"`
	// Attempt is the attempt the wrap is for; Wrapped echoes it.
	Attempt int `msgpack:"attempt,omitempty"`
}

// Wrapped answers a WrapRequest.
type Wrapped struct {
	JobID      string `msgpack:"job"`
	WrappedKey []byte `msgpack:"wrapped_key"`
	// Attempt echoes WrapRequest.Attempt.
	Attempt int `msgpack:"attempt,omitempty"`
	// Refused, when set, says why the client would not wrap the key (for
	// example a slave certificate that does not verify); WrappedKey is
	// then empty and the job fails.
	Refused string `msgpack:"refused,omitempty"`
}

// File stream kinds.
const (
	FileSource = "source"
	FileStdin  = "stdin"
)

// FileHeader opens every file stream; exactly Size bytes follow it.
type FileHeader struct {
	JobID  string `msgpack:"job"`
	Kind   string `msgpack:"kind"`
	Name   string `msgpack:"name"`
	Size   int64  `msgpack:"size"`
	SHA256 []byte `msgpack:"sha256"`
	Sealed bool   `msgpack:"sealed,omitempty"`
}

// Default timings.
const (
	DefaultLoadInterval = 2 * time.Second
)
