package state

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// snapshotVersion is the version of the snapshot format written by
// [Image.WriteTo]; Restore refuses any other.
const snapshotVersion = 1

// Image is a point-in-time copy of the state: the tables of immutable
// records, copied under the lock, sorted and encoded outside it.
type Image struct {
	header snapHeader
	jobs   []*Job // in map order until sorted
	sorted bool
}

// snapHeader opens a snapshot; Jobs records follow it.
type snapHeader struct {
	Version int     `msgpack:"version"`
	Seq     uint64  `msgpack:"seq"`
	EndSeq  uint64  `msgpack:"end_seq"`
	Slaves  []Slave `msgpack:"slaves"`
	Jobs    int     `msgpack:"jobs"`
	Clean   bool    `msgpack:"clean,omitempty"`
}

// Image copies the state's tables (not the records, which are immutable).
// Raft calls it on the goroutine that applies the log, so it only copies:
// the records are put in id order by WriteTo, which raft runs on its
// snapshot goroutine (with the sort, Image of 200,000 records took
// 144-446 ms on the 2-core test machine, a stall of every job's Submit
// and Result; without, 5-93 ms: BenchmarkImage).
func (m *Machine) Image() *Image {
	m.mu.RLock()
	img := &Image{header: snapHeader{Version: snapshotVersion, Seq: m.seq, EndSeq: m.endSeq, Clean: m.clean}}
	img.jobs = make([]*Job, 0, len(m.jobs))
	for _, j := range m.jobs {
		img.jobs = append(img.jobs, j)
	}
	img.header.Slaves = m.slavesLocked()
	m.mu.RUnlock()
	img.header.Jobs = len(img.jobs)
	return img
}

// WriteTo encodes the image: the header, then every job in id order.
// Two machines with the same state write the same bytes.
func (img *Image) WriteTo(w io.Writer) (int64, error) {
	if !img.sorted {
		slices.SortFunc(img.jobs, func(a, b *Job) int { return cmp.Compare(a.Seq, b.Seq) })
		img.sorted = true
	}
	cw := &countWriter{w: w}
	bw := bufio.NewWriterSize(cw, 64<<10)
	enc := msgpack.NewEncoder(bw)
	if err := enc.Encode(&img.header); err != nil {
		return cw.n, fmt.Errorf("snapshot header: %w", err)
	}
	for _, j := range img.jobs {
		if err := enc.Encode(j); err != nil {
			return cw.n, fmt.Errorf("snapshot job %s: %w", j.ID, err)
		}
	}
	err := bw.Flush()
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrBadSnapshot: a snapshot that does not decode or is inconsistent.
var ErrBadSnapshot = errors.New("bad snapshot")

// Restore replaces the whole state by the snapshot read from r. On error
// the state is left as it was.
func (m *Machine) Restore(r io.Reader) (err error) {
	// msgpack v5.4.1 panics on some malformed input (a nil where a struct
	// field is expected: reflect.Value.IsNil on a struct); a snapshot that
	// does that is bad, not a reason to crash the master.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: does not decode: %v", ErrBadSnapshot, p)
		}
	}()
	n := NewMachine()
	dec := msgpack.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if h.Version != snapshotVersion {
		return fmt.Errorf("%w: version %d, this build reads %d", ErrBadSnapshot, h.Version, snapshotVersion)
	}
	n.seq, n.endSeq, n.clean = h.Seq, h.EndSeq, h.Clean
	for i := range h.Slaves {
		s := h.Slaves[i]
		n.slaves[s.Name] = &s
	}
	for i := 0; i < h.Jobs; i++ {
		j := new(Job)
		if err := dec.Decode(j); err != nil {
			return fmt.Errorf("%w: job %d of %d: %v", ErrBadSnapshot, i+1, h.Jobs, err)
		}
		if err := n.restoreJob(j); err != nil {
			return err
		}
	}
	slices.SortFunc(n.ended, func(a, b *Job) int { return cmp.Compare(a.EndSeq, b.EndSeq) })
	// endedIndex finds an ended job by its EndSeq: two with the same one
	// would make eviction and delivery act on the wrong record.
	for i := 1; i < len(n.ended); i++ {
		if a, b := n.ended[i-1], n.ended[i]; a.EndSeq == b.EndSeq {
			return fmt.Errorf("%w: jobs %s and %s both ended at %d", ErrBadSnapshot, a.ID, b.ID, b.EndSeq)
		}
	}
	for _, j := range n.ended {
		n.hold(j)
	}
	m.mu.Lock()
	m.jobs, m.slaves, m.seq, m.endSeq = n.jobs, n.slaves, n.seq, n.endSeq
	m.bytes, m.live, m.ended, m.held, m.clean = n.bytes, n.live, n.ended, n.held, n.clean
	m.mu.Unlock()
	return nil
}

// restoreJob adds one decoded record, checking what the counters rely on.
func (m *Machine) restoreJob(j *Job) error {
	switch {
	case j.Seq == 0 || j.Seq > m.seq || j.ID != fmt.Sprintf("J%d", j.Seq):
		return fmt.Errorf("%w: job %q with sequence %d (last %d)", ErrBadSnapshot, j.ID, j.Seq, m.seq)
	case j.State != Queued && j.State != Assigned && !j.Ended() || j.Attempt < 1:
		return fmt.Errorf("%w: job %s in state %q at attempt %d", ErrBadSnapshot, j.ID, j.State, j.Attempt)
	case m.jobs[j.ID] != nil:
		return fmt.Errorf("%w: job %s twice", ErrBadSnapshot, j.ID)
	case j.Ended() && (j.EndSeq == 0 || j.EndSeq > m.endSeq):
		return fmt.Errorf("%w: job %s ended at %d (last %d)", ErrBadSnapshot, j.ID, j.EndSeq, m.endSeq)
	}
	m.jobs[j.ID] = j
	m.bytes += j.size()
	if j.Ended() {
		m.ended = append(m.ended, j)
	} else {
		m.live++
	}
	return nil
}
