package wire

// Messages of durable jobs: what a slave kept through a lost session, the
// keys a client wraps ahead for an asynchronous sealed job, and how a
// client finds its jobs again (Attach, ListJobs).

// HeldJob is a job a slave kept running (or finished) through the loss of
// its session with the master, reported in [Register.Held]. The slave
// sends the attempt's Output again from its first chunk, then its Result
// once it has one; the master cancels what it no longer wants.
type HeldJob struct {
	JobID   string `msgpack:"job"`
	Attempt int    `msgpack:"attempt"`
	Done    bool   `msgpack:"done,omitempty"` // finished: its Result is waiting
}

// KeyWrap is a sealed job's content key wrapped by its client for one
// slave's sealing key, after checking the slave's certificate against the
// cluster CA.
type KeyWrap struct {
	Slave string `msgpack:"slave"`
	Key   []byte `msgpack:"key"`
	// SealKey is the slave's public sealing key the wrap was made for (a
	// Submit's wraps, optional): the master uses the wrap only for a slave
	// of that name that registered this key, so a wrap made from a
	// remembered certificate of a slave since re-issued under the same
	// name (kiln run's slave cache) is not sent to it; it gets a
	// WrapRequest instead.
	SealKey []byte `msgpack:"seal_key,omitempty"`
}

// Wraps gives the master a sealed job's content key wrapped by its client
// for slaves that run the language, so that it can dispatch the job while
// the client is away. The client sends it right after Accepted, when the
// job id the wraps are bound to is known.
type Wraps struct {
	JobID string    `msgpack:"job"`
	Wraps []KeyWrap `msgpack:"wraps"`
}

// SealSlave is a connected slave that can run sealed jobs: its name and
// TLS certificate (DER), whose CA-signed extension holds its sealing key.
type SealSlave struct {
	Name string `msgpack:"name"`
	Cert []byte `msgpack:"cert"`
}

// Attach asks for a job the client submitted earlier, from this session or
// another one (a reconnect, another process with the same key).
type Attach struct {
	JobID string `msgpack:"job"`
}

// Attached answers an Attach. The job's JobState, its current attempt's
// Output (again from the first chunk the master has) and its Result once
// it has one follow, as for a job this session submitted. A job of
// another key is answered as unknown ([CodeNotFound]).
type Attached struct {
	JobID     string `msgpack:"job"`
	State     string `msgpack:"state"`
	Attempt   int    `msgpack:"attempt"`
	Language  string `msgpack:"lang"`
	FileName  string `msgpack:"file"`
	Sealed    bool   `msgpack:"sealed,omitempty"`
	KeyNonce  []byte `msgpack:"key_nonce,omitempty"`
	ClientKey []byte `msgpack:"client_key,omitempty"`
}

// ListJobs asks for the jobs of the client's key (every job for an admin
// key), newest first.
type ListJobs struct{}

// JobSummary is one job in a [JobList].
type JobSummary struct {
	JobID      string `msgpack:"job"`
	Client     string `msgpack:"client"`
	State      string `msgpack:"state"`
	Status     string `msgpack:"status,omitempty"`
	Attempt    int    `msgpack:"attempt"`
	Language   string `msgpack:"lang"`
	FileName   string `msgpack:"file"`
	CreatedMs  int64  `msgpack:"created_ms"`
	FinishedMs int64  `msgpack:"finished_ms,omitempty"`
}

// JobList answers a ListJobs: at most [MaxJobList] jobs, newest first;
// Truncated says there were more.
type JobList struct {
	Jobs      []JobSummary `msgpack:"jobs"`
	Truncated bool         `msgpack:"truncated,omitempty"`
}

// Bounds of the durable-job messages.
const (
	// MaxHeld bounds Register.Held: the jobs a slave keeps through a
	// lost session (its slots plus finished results not yet delivered).
	MaxHeld = 256
	// MaxWraps bounds Wraps.Wraps, Submit.Wraps and Info.SealSlaves.
	MaxWraps = 64
	// WrapNonceSize is the size of Submit.WrapNonce.
	WrapNonceSize = 32
	// MaxJobList bounds JobList.Jobs.
	MaxJobList = 500
)

func (h *HeldJob) checkFields(f *fields) { f.str("held job", h.JobID, MaxShort) }

func (w *KeyWrap) checkFields(f *fields) {
	f.str("wrap slave", w.Slave, MaxName)
	f.bin("wrap key", w.Key, MaxKey)
	f.bin("wrap seal_key", w.SealKey, MaxKey)
}

func (w *Wraps) checkFields(f *fields) {
	f.str("job", w.JobID, MaxShort)
	f.count("wraps", len(w.Wraps), MaxWraps)
	for i := range w.Wraps {
		w.Wraps[i].checkFields(f)
	}
}

func (r *InfoRequest) checkFields(f *fields) { f.str("seal_for", r.SealFor, MaxShort) }

func (a *Attach) checkFields(f *fields) { f.str("job", a.JobID, MaxShort) }

func (a *Attached) checkFields(f *fields) {
	f.str("job", a.JobID, MaxShort)
	f.str("state", a.State, MaxShort)
	f.str("lang", a.Language, MaxShort)
	f.str("file", a.FileName, MaxText)
	f.bin("key_nonce", a.KeyNonce, MaxKey)
	f.bin("client_key", a.ClientKey, MaxKey)
}

func (l *JobList) checkFields(f *fields) {
	f.count("jobs", len(l.Jobs), MaxJobList)
	for _, j := range l.Jobs {
		f.str("job", j.JobID, MaxShort)
		f.str("client", j.Client, MaxName)
		f.str("state", j.State, MaxShort)
		f.str("status", j.Status, MaxShort)
		f.str("lang", j.Language, MaxShort)
		f.str("file", j.FileName, MaxText)
	}
}
