package master

import "time"

// JobBudget bounds what a client can make the master hold for its uploads
// and jobs, and how long a slave may hold a job: the job side of [Budget]
// (docs/security.md has the table). A zero field takes its default (see
// [DefaultJobBudget]).
type JobBudget struct {
	// HeldBytesPerClient bounds the upload bytes one client key holds in
	// memory (pending uploads and its queued and running jobs), under
	// Config.MaxHeldBytes for all; past it the upload is refused busy.
	HeldBytesPerClient int64
	// DurableOutputPerClient bounds, with a store (Config.Store), the
	// output of one client key's running jobs the master keeps in memory
	// for their durable records until each Result is written; past it the
	// job whose output does not fit ends output_limit (its slave is not
	// struck: the output is the key's, not the slave's fault).
	DurableOutputPerClient int64
	// UploadIdle is how long a file stream may go without delivering a
	// chunk (64 KiB) before it is closed and its upload refused.
	UploadIdle time.Duration
	// SubmitWait is how long a file stream whose Submit has not arrived
	// waits for it, unread; then it is closed. A file for a refused Submit
	// is closed at once.
	SubmitWait time.Duration
	// FilesPerSession is how many file streams of one client session are
	// read (or wait for their Submit) at once; the next waits, unaccepted,
	// in the transport's accept backlog. An accepted stream may hold up to
	// twice the stream window (2 MiB) in the transport before it is read.
	FilesPerSession int
	// JobsPerClient bounds the jobs of one client key queued, assigned or
	// running at once; past it Submit is refused busy with a retry hint.
	JobsPerClient int
	// JobRunTime is the run time the master allows a job that asked for
	// no time limit (the longest a slave applies by default); JobCompileTime
	// is allowed for its compile step and JobGrace for file transfers and
	// the slave's own overhead. A job still unanswered past assignment +
	// its time limit + JobCompileTime + JobGrace is cancelled on its slave,
	// which is struck, and queued again once.
	JobRunTime     time.Duration
	JobCompileTime time.Duration
	JobGrace       time.Duration
	// SendFileIdle is how long a file stream to a slave may go without
	// progress before it fails its job (not the slave's session).
	SendFileIdle time.Duration
	// OutputMessages bounds the Output messages of one attempt; with the
	// job's output cap in bytes it ends the job with output_limit.
	OutputMessages int
	// QuarantineStrikes slave-side failures in a row (internal_error,
	// missed deadline, output over the cap, undeliverable files)
	// quarantine a slave for QuarantineBase, doubling with each quarantine
	// up to QuarantineMax; a job that ends well clears the strikes.
	QuarantineStrikes int
	QuarantineBase    time.Duration
	QuarantineMax     time.Duration
}

// DefaultJobBudget returns the defaults documented in docs/security.md.
func DefaultJobBudget() JobBudget {
	return JobBudget{
		HeldBytesPerClient:     256 << 20,
		DurableOutputPerClient: 256 << 20,
		UploadIdle:             10 * time.Second,
		SubmitWait:             500 * time.Millisecond,
		FilesPerSession:        4,
		JobsPerClient:          128,
		JobRunTime:             60 * time.Second,
		JobCompileTime:         60 * time.Second,
		JobGrace:               30 * time.Second,
		SendFileIdle:           10 * time.Second,
		OutputMessages:         1 << 16,
		QuarantineStrikes:      3,
		QuarantineBase:         30 * time.Second,
		QuarantineMax:          10 * time.Minute,
	}
}

func (b JobBudget) withDefaults() JobBudget {
	d := DefaultJobBudget()
	setInt64(&b.HeldBytesPerClient, d.HeldBytesPerClient)
	setInt64(&b.DurableOutputPerClient, d.DurableOutputPerClient)
	setDur(&b.UploadIdle, d.UploadIdle)
	setDur(&b.SubmitWait, d.SubmitWait)
	setInt(&b.FilesPerSession, d.FilesPerSession)
	setInt(&b.JobsPerClient, d.JobsPerClient)
	setDur(&b.JobRunTime, d.JobRunTime)
	setDur(&b.JobCompileTime, d.JobCompileTime)
	setDur(&b.JobGrace, d.JobGrace)
	setDur(&b.SendFileIdle, d.SendFileIdle)
	setInt(&b.OutputMessages, d.OutputMessages)
	setInt(&b.QuarantineStrikes, d.QuarantineStrikes)
	setDur(&b.QuarantineBase, d.QuarantineBase)
	setDur(&b.QuarantineMax, d.QuarantineMax)
	return b
}

// jobDeadline is how long after its assignment a job with limits l must
// have its Result.
func (b JobBudget) jobDeadline(timeMs int64) time.Duration {
	run := b.JobRunTime
	if timeMs > 0 {
		run = time.Duration(timeMs) * time.Millisecond
	}
	return run + b.JobCompileTime + b.JobGrace
}
