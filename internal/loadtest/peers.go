package loadtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// source is every job's program.
var source = []byte("print(1)\n")

// sourceSum is the SHA-256 of source, sent with it inline.
var sourceSum = sha256.Sum256(source)

// dial connects b to addr and says Hello, retrying busy refusals (the
// master's handshake bound) after their hint, bounded by ctx.
func dial(ctx context.Context, addr string, b *certs.Bundle, streams, quiet bool) (*transport.Session, error) {
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		return nil, err
	}
	var features []string
	if !streams {
		features = []string{wire.FeatureInline}
	}
	if quiet {
		features = append(features, wire.FeatureQuiet)
	}
	for {
		s, err := transport.Dial(ctx, addr, auth.ClientConfig(b, "127.0.0.1"), transport.Config{})
		if err == nil {
			_, err = transport.Hello(ctx, s, wire.Hello{Role: id.Role, Name: id.Name, Version: id.Version, Features: features})
			if err == nil {
				return s, nil
			}
		}
		var re *transport.RefusedError
		if !errors.As(err, &re) || re.Code != wire.CodeBusy {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(max(re.RetryAfter, 10*time.Millisecond)):
		}
	}
}

// slave is a simulated slave: it registers, reports its load every second,
// reads each job's source, and answers ok after the set delay.
type slave struct {
	setup    *Setup
	sess     *transport.Session
	name     string
	slots    int
	assigned atomic.Int64
	inline   atomic.Int64 // Assigns with the source inside
	streams  atomic.Int64 // file streams received
	wg       sync.WaitGroup
	mu       sync.Mutex
	pending  map[string]*wire.Assign // seen Assign or source, not both; a nil Assign: source first
}

func startSlave(ctx context.Context, setup *Setup, b *certs.Bundle, slots int) (*slave, error) {
	s, err := dial(ctx, setup.cfg.SlaveAddr, b, setup.cfg.Streams, false)
	if err != nil {
		return nil, err
	}
	id, _ := auth.IdentityOf(b.Cert)
	sl := &slave{setup: setup, sess: s, name: id.Name, slots: slots, pending: map[string]*wire.Assign{}}
	tcs := []wire.Toolchain{{Language: wire.LangPython, Compiler: "python 3", Extensions: []string{".py"}}}
	if err := s.Send(wire.MsgRegister, 0, wire.Register{Toolchains: tcs, Slots: slots, OS: "linux"}); err != nil {
		s.Close()
		return nil, err
	}
	s.Send(wire.MsgLoad, 0, wire.Load{Slots: slots})
	sl.wg.Go(sl.recv)
	sl.wg.Go(sl.files)
	sl.wg.Go(sl.report)
	return sl, nil
}

func (sl *slave) report() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-sl.sess.Done():
			return
		case <-tick.C:
			sl.sess.Send(wire.MsgLoad, 0, wire.Load{Slots: sl.slots})
		}
	}
}

func (sl *slave) recv() {
	for {
		env, err := sl.sess.Recv()
		if err != nil {
			return
		}
		if env.Type != wire.MsgAssign {
			continue
		}
		a := new(wire.Assign)
		if wire.Decode(env, a) != nil {
			return
		}
		sl.setup.assigned.Store(a.JobID, now())
		sl.assigned.Add(1)
		if len(a.Source) > 0 {
			sl.inline.Add(1)
			sl.answerAfterDelay(a) // inline: no stream follows
			continue
		}
		sl.arrived(a.JobID, a)
	}
}

func (sl *slave) files() {
	for {
		hdr, rc, err := sl.sess.AcceptFile(context.Background())
		if err != nil {
			return
		}
		sl.streams.Add(1)
		io.Copy(io.Discard, rc)
		rc.Close()
		if hdr.Kind == wire.FileSource {
			sl.arrived(hdr.JobID, nil)
		}
	}
}

// arrived notes a job's Assign (a) or source (nil) and answers the job once
// it has both.
func (sl *slave) arrived(jobID string, a *wire.Assign) {
	sl.mu.Lock()
	other, seen := sl.pending[jobID]
	if !seen {
		sl.pending[jobID] = a
		sl.mu.Unlock()
		return
	}
	delete(sl.pending, jobID)
	sl.mu.Unlock()
	if a == nil {
		a = other
	}
	sl.answerAfterDelay(a)
}

// answerAfterDelay answers a after Config.SlaveDelay.
func (sl *slave) answerAfterDelay(a *wire.Assign) {
	if d := sl.setup.cfg.SlaveDelay; d > 0 {
		sl.wg.Add(1)
		time.AfterFunc(d, func() {
			defer sl.wg.Done()
			sl.answer(a)
		})
		return
	}
	sl.answer(a)
}

func (sl *slave) answer(a *wire.Assign) {
	sl.sess.Send(wire.MsgResult, 0, wire.Result{JobID: a.JobID, Attempt: a.Attempt, Status: wire.StatusOK,
		Language: a.Language, Slave: sl.name, Compiler: "python 3"})
}

func (sl *slave) close() {
	sl.sess.Close()
	sl.wg.Wait()
}

// session is a simulated client session: a sender that submits the jobs
// Run hands it, one at a time, and a reader matching answers to jobs.
type session struct {
	setup *Setup
	sess  *transport.Session
	queue chan *job
	busy  atomic.Int64
	wg    sync.WaitGroup

	mu    sync.Mutex
	next  uint64
	byReq map[uint64]*job
	byID  map[string]*job
}

func startSession(ctx context.Context, setup *Setup, b *certs.Bundle) (*session, error) {
	s, err := dial(ctx, setup.cfg.ClientAddr, b, setup.cfg.Streams, setup.cfg.Quiet)
	if err != nil {
		return nil, err
	}
	cs := &session{setup: setup, sess: s, queue: make(chan *job, 1), byReq: map[uint64]*job{}, byID: map[string]*job{}}
	cs.wg.Go(cs.send)
	cs.wg.Go(cs.recv)
	return cs, nil
}

// submit hands a new job to the sender, or reports false when the sender
// already has one waiting.
func (cs *session) submit() (*job, bool) {
	j := &job{}
	select {
	case cs.queue <- j:
		return j, true
	default:
		return nil, false
	}
}

func (cs *session) send() {
	for {
		var j *job
		select {
		case <-cs.sess.Done():
			return
		case j = <-cs.queue:
		}
		cs.mu.Lock()
		cs.next++
		j.req = cs.next
		cs.byReq[j.req] = j
		cs.mu.Unlock()
		j.submit.Store(now())
		sub := wire.Submit{Language: wire.LangPython, FileName: "load.py", SourceSize: int64(len(source))}
		if !cs.setup.cfg.Streams {
			sub.Source, sub.SourceSHA256 = source, sourceSum[:]
		}
		if cs.sess.Send(wire.MsgSubmit, j.req, sub) != nil {
			return
		}
		if !cs.setup.cfg.Streams {
			continue
		}
		hdr := wire.NewFileHeader(strconv.FormatUint(j.req, 10), wire.FileSource, "load.py", source)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cs.sess.SendFile(ctx, hdr, bytes.NewReader(source))
		cancel()
		if err != nil {
			return
		}
	}
}

func (cs *session) recv() {
	for {
		env, err := cs.sess.Recv()
		if err != nil {
			return
		}
		switch env.Type {
		case wire.MsgAccepted:
			var a wire.Accepted
			if wire.Decode(env, &a) != nil {
				return
			}
			cs.mu.Lock()
			if j := cs.byReq[env.ID]; j != nil {
				delete(cs.byReq, env.ID)
				j.id.Store(&a.JobID)
				cs.byID[a.JobID] = j
			}
			cs.mu.Unlock()
		case wire.MsgError:
			var e wire.Error
			if wire.Decode(env, &e) != nil {
				return
			}
			cs.mu.Lock()
			j := cs.byReq[env.ID]
			delete(cs.byReq, env.ID)
			cs.mu.Unlock()
			if j != nil {
				if e.Code == wire.CodeBusy {
					cs.busy.Add(1)
				}
				j.result.Store(-1)
			}
		case wire.MsgResult:
			var r wire.Result
			if wire.Decode(env, &r) != nil {
				return
			}
			cs.mu.Lock()
			j := cs.byID[r.JobID]
			delete(cs.byID, r.JobID)
			cs.mu.Unlock()
			if j == nil || r.Status != wire.StatusOK {
				cs.setup.wrong.Add(1)
				continue
			}
			j.result.Store(now())
		}
	}
}

func (cs *session) close() {
	cs.sess.Close()
	cs.wg.Wait()
}
