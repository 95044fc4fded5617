package state

import (
	"time"

	"kiln/transport/wire"
)

// Job states, the same strings as on the wire ([wire.StateQueued] …).
const (
	Queued   = wire.StateQueued
	Assigned = wire.StateAssigned
	Done     = wire.StateDone
	Failed   = wire.StateFailed
)

// Job is the durable record of one job. Records are immutable once
// published: see the package doc.
type Job struct {
	ID    string `msgpack:"id"`
	Seq   uint64 `msgpack:"seq"`
	Owner string `msgpack:"owner"` // fingerprint of the submitting client key
	Name  string `msgpack:"name"`  // the client key's name, for listings

	Submit   wire.Submit `msgpack:"submit"`
	Source   []byte      `msgpack:"source"`
	Stdin    []byte      `msgpack:"stdin,omitempty"`
	SrcSum   []byte      `msgpack:"src_sum,omitempty"`
	StdinSum []byte      `msgpack:"stdin_sum,omitempty"`
	// Wraps are the job's content key wrapped by its client for slaves
	// (sealed jobs only), so that it can be dispatched without the client.
	Wraps []Wrap `msgpack:"wraps,omitempty"`

	State   string `msgpack:"state"`
	Attempt int    `msgpack:"attempt"`
	Slave   string `msgpack:"slave,omitempty"`
	// CancelRequested is set by a Cancel of an assigned job: the slave
	// has been asked to stop and its Result ends the job.
	CancelRequested bool `msgpack:"cancel,omitempty"`

	Created  time.Time `msgpack:"created"`
	Assigned time.Time `msgpack:"assigned,omitempty"`
	Finished time.Time `msgpack:"finished,omitempty"`

	// EndSeq orders ended jobs for retention: the state's end counter
	// when the job ended (0 while it runs).
	EndSeq uint64 `msgpack:"end_seq,omitempty"`

	Result    *wire.Result `msgpack:"result,omitempty"`
	Output    []Chunk      `msgpack:"output,omitempty"`
	Delivered bool         `msgpack:"delivered,omitempty"`
}

// Wrap is a job's content key wrapped for one slave.
type Wrap struct {
	Slave string `msgpack:"slave"` // the slave's key fingerprint
	Key   []byte `msgpack:"key"`
}

// Chunk is one piece of a job's output as the slave sent it (sealed in a
// sealed job).
type Chunk struct {
	Stream uint8  `msgpack:"stream"`
	Seq    uint64 `msgpack:"seq"`
	Data   []byte `msgpack:"data"`
	Key    []byte `msgpack:"key,omitempty"`
}

// Ended reports whether the job has ended (done or failed).
func (j *Job) Ended() bool { return j.State == Done || j.State == Failed }

// size is what the record costs the state, counted against the size cap:
// its payload, wraps and output.
func (j *Job) size() int64 {
	n := int64(len(j.Source) + len(j.Stdin) + len(j.SrcSum) + len(j.StdinSum))
	for _, w := range j.Wraps {
		n += int64(len(w.Key))
	}
	for _, c := range j.Output {
		n += int64(len(c.Data) + len(c.Key))
	}
	if j.Result != nil {
		n += int64(len(j.Result.CompileOutput) + len(j.Result.Key) + len(j.Result.Verdict))
	}
	return n
}

// Slave is the durable record of one slave: admin drains and quarantine.
type Slave struct {
	Name             string    `msgpack:"name"`
	Drained          bool      `msgpack:"drained,omitempty"`
	QuarantinedUntil time.Time `msgpack:"quarantined_until,omitempty"`
	Strikes          int       `msgpack:"strikes,omitempty"`
}
