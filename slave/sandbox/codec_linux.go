package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// The per-job messages, run and done, travel in a compact binary form;
// the others (setup, ready, kill) as JSON. Decoding a run message with
// encoding/json took ~33 µs of the init's CPU per job and the done
// message ~23 µs of the slave's, most of it reflection
// (docs/performance.md, "The sandbox's own CPU per job").
//
// A JSON message starts with '{'; a binary one with its tag byte, then
// unsigned varints (u), signed varints (i) and strings (a u length, then
// the bytes):
//
//	run:  tagRun, u seq, u flags (1 reuse, 2 no filter), u argc, argc
//	      strings, u envc, envc strings, u rlimitc, rlimitc times
//	      (u resource, u cur, u max)
//	done: tagDone, u seq, string err, u flags (1 has done, 2 clean,
//	      4 filtered), string start error, u status, i wall, i cpu,
//	      i max RSS, i attach, i start, i reap, i join (ns, KiB)
//
// Every count is checked against the bytes left before anything is
// allocated, and trailing bytes are an error.
const (
	tagRun  = 1
	tagDone = 2
)

var errCodec = errors.New("sandbox: bad binary protocol message")

// encodeMsg encodes m: run and done in binary, the others as JSON.
func encodeMsg(m envelope) ([]byte, error) {
	switch {
	case m.T == msgRun && m.Run != nil && m.Err == "":
		return appendRun(make([]byte, 0, 512), m.Seq, m.Run), nil
	case m.T == msgDone:
		return appendDone(make([]byte, 0, 128), m), nil
	}
	return json.Marshal(m)
}

// decodeMsg decodes a message made by encodeMsg.
func decodeMsg(b []byte, m *envelope) error {
	if len(b) == 0 || b[0] == '{' {
		return json.Unmarshal(b, m)
	}
	d := decoder{b: b[1:]}
	switch b[0] {
	case tagRun:
		m.T, m.Run = msgRun, &runMsg{}
		d.run(m)
	case tagDone:
		m.T = msgDone
		d.done(m)
	default:
		return fmt.Errorf("%w: tag %d", errCodec, b[0])
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d bytes left over", errCodec, len(d.b))
	}
	return d.err
}

func appendRun(b []byte, seq uint64, r *runMsg) []byte {
	b = append(b, tagRun)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, flags(r.Reuse, r.NoFilter))
	b = appendStrings(b, r.Argv)
	b = appendStrings(b, r.Env)
	b = binary.AppendUvarint(b, uint64(len(r.Rlimits)))
	for _, l := range r.Rlimits {
		b = binary.AppendUvarint(b, uint64(l.Resource))
		b = binary.AppendUvarint(b, l.Cur)
		b = binary.AppendUvarint(b, l.Max)
	}
	return b
}

func appendDone(b []byte, m envelope) []byte {
	var d doneMsg
	if m.Done != nil {
		d = *m.Done
	}
	b = append(b, tagDone)
	b = binary.AppendUvarint(b, m.Seq)
	b = appendString(b, m.Err)
	b = binary.AppendUvarint(b, flags(m.Done != nil, d.Clean, d.Filtered))
	b = appendString(b, d.StartErr)
	b = binary.AppendUvarint(b, uint64(d.Status))
	for _, v := range [...]int64{d.WallNs, d.CPUNs, d.MaxRSSKiB, d.AttachNs, d.StartNs, d.ReapNs, d.JoinNs} {
		b = binary.AppendVarint(b, v)
	}
	return b
}

// flags packs bools, the first in bit 0.
func flags(bits ...bool) uint64 {
	var f uint64
	for i, set := range bits {
		if set {
			f |= 1 << i
		}
	}
	return f
}

func appendStrings(b []byte, l []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(l)))
	for _, s := range l {
		b = appendString(b, s)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads a binary message; the first error sticks and every later
// read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errCodec, what)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of items of at least min bytes each.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail("count past the message")
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string past the message")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) strings() []string {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.string()
	}
	return l
}

func (d *decoder) run(m *envelope) {
	r := m.Run
	m.Seq = d.uvarint()
	f := d.uvarint()
	r.Reuse, r.NoFilter = f&1 != 0, f&2 != 0
	r.Argv = d.strings()
	r.Env = d.strings()
	if n := d.count(3); n > 0 {
		r.Rlimits = make([]rlimitSpec, n)
		for i := range r.Rlimits {
			l := &r.Rlimits[i]
			res := d.uvarint()
			if res > 1<<16 {
				d.fail("rlimit resource")
			}
			l.Resource, l.Cur, l.Max = int(res), d.uvarint(), d.uvarint()
		}
	}
}

func (d *decoder) done(m *envelope) {
	m.Seq = d.uvarint()
	m.Err = d.string()
	f := d.uvarint()
	x := doneMsg{Clean: f&2 != 0, Filtered: f&4 != 0}
	x.StartErr = d.string()
	st := d.uvarint()
	if st > 1<<32-1 {
		d.fail("status")
	}
	x.Status = uint32(st)
	for _, p := range [...]*int64{&x.WallNs, &x.CPUNs, &x.MaxRSSKiB, &x.AttachNs, &x.StartNs, &x.ReapNs, &x.JoinNs} {
		*p = d.varint()
	}
	if f&1 != 0 {
		m.Done = &x
	}
}
