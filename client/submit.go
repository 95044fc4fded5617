package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"time"

	"kiln/transport/wire"
)

// Request is one program to run.
type Request struct {
	// FileName is the source file's name; its extension selects the
	// language (see wire.LanguageOf). Only its base name is sent.
	FileName string
	Source   []byte
	Stdin    []byte
	Limits   wire.JobLimits
	// Progress, when set, is called from Submit's goroutine as the source
	// and stdin are uploaded, with the bytes sent so far and the total.
	Progress func(sent, total int64)
	// Language names the language; empty means the one of the file's
	// extension: a built-in one (wire.LanguageOf) or, failing that, the
	// one whose extensions the master's slaves announced (see Info).
	Language string
	// Options are compiler options among those the language allows
	// (wire.LanguageInfo.Options), e.g. "-std=c++20".
	Options []string
	// Tests, when set, makes the job a test batch (see [Tests]).
	Tests *Tests
	// Seal seals the source, stdin and output end to end between this
	// client and the slave that runs the job: the master routes only
	// ciphertext (see docs/security.md). The master then needs a slave
	// with a sealing key, and asks this client to wrap the job's key for
	// it; output that fails authentication ends the job with a *[SealError].
	Seal bool
	// Away says the client may be gone when the job is dispatched (kiln
	// submit): a sealed job's key is then wrapped ahead, after Accepted,
	// for every slave that can run the language ([Client.WrapAhead]).
	Away bool
}

// Check validates a request against limits (zero fields mean no limit).
// Its errors wrap [ErrBadInput].
func (r Request) Check(l wire.Limits) error {
	name := filepath.Base(r.FileName)
	if r.Language == "" && wire.LanguageOf(name) == "" {
		return fmt.Errorf("%w: %s: unknown language (want .c, .cpp, .cc, .java, .py or a language the slaves announce)", ErrBadInput, name)
	}
	if len(r.Source) == 0 {
		return fmt.Errorf("%w: %s: empty source file", ErrBadInput, name)
	}
	if l.MaxSource > 0 && int64(len(r.Source)) > l.MaxSource {
		return fmt.Errorf("%w: %s: source is %d bytes, over the master's limit of %d", ErrBadInput, name, len(r.Source), l.MaxSource)
	}
	if l.MaxStdin > 0 && int64(len(r.Stdin)) > l.MaxStdin {
		return fmt.Errorf("%w: stdin is %d bytes, over the master's limit of %d", ErrBadInput, len(r.Stdin), l.MaxStdin)
	}
	return nil
}

// Submit sends a program to the master and waits until it is accepted.
// It fails with an error wrapping [ErrBadInput] before sending anything
// when the request is invalid or over the master's limits, and with a
// *[RequestError] when the master refuses the job (busy, no_slave, ...).
func (c *Client) Submit(ctx context.Context, req Request) (*Job, error) {
	var err error
	if req, err = c.resolveLanguage(ctx, req); err != nil {
		return nil, err
	}
	if err := c.checkTests(req); err != nil {
		return nil, err
	}
	if err := req.Check(c.welcome.Limits); err != nil {
		return nil, err
	}
	name := filepath.Base(req.FileName)
	var js *jobSeal
	if req.Seal {
		var err error
		if js, req, err = c.sealRequest(req); err != nil {
			return nil, err
		}
		js.language = req.Language
	}
	if req.Tests != nil {
		if req.Stdin, err = c.packTests(req.Tests, js); err != nil {
			return nil, err
		}
	}
	sub := wire.Submit{
		Language:   req.Language,
		Options:    req.Options,
		FileName:   name,
		SourceSize: int64(len(req.Source)),
		StdinSize:  int64(len(req.Stdin)),
		Limits:     req.Limits,
	}
	if js != nil {
		sub.Sealed, sub.ClientKey, sub.KeyNonce = true, js.priv.PublicKey().Bytes(), js.nonce
		if wire.HasFeature(c.welcome.Features, wire.FeatureSubmitWraps) {
			if sub.WrapNonce, sub.Wraps, err = js.wrapInSubmit(c.keys, c.ahead); err != nil {
				return nil, err
			}
		}
	}
	id, p, err := c.register(&call{submit: true, seal: js, maxOutput: outputBound(req.Limits, c.welcome.Limits)})
	if err != nil {
		return nil, err
	}
	if req.Tests != nil {
		sub.Tests = len(req.Tests.Cases)
	}
	streamed := c.inline(&sub, req)
	if err := c.send(ctx, wire.MsgSubmit, id, sub); err != nil {
		c.unregister(id)
		return nil, err
	}
	if n := sub.Inline.Size(); n > 0 && req.Progress != nil {
		req.Progress(int64(n), int64(len(req.Source)+len(req.Stdin)))
	}
	if streamed.Source || streamed.Stdin {
		if err := c.uploadUntilAnswered(ctx, id, p, name, req, streamed); err != nil {
			return nil, err
		}
	}
	r, err := c.await(ctx, id, p)
	if err != nil {
		return nil, err
	}
	if r.env.Type != wire.MsgAccepted || r.job == nil {
		return nil, fmt.Errorf("submit: unexpected answer type %d", r.env.Type)
	}
	if req.Away && js != nil {
		if _, err := c.WrapAhead(ctx, r.job, sub.Language); err != nil {
			return r.job, fmt.Errorf("job %s accepted, but its key could not be wrapped ahead for the slaves (it runs only while this client is connected): %w", r.job.id, err)
		}
	}
	return r.job, nil
}

// streams says which files of a Submit travel on file streams.
type streams struct{ Source, Stdin bool }

// inlineHeadroom is how far under the master's frame cap a Submit with
// inline files may come before its exact size is worth measuring.
const inlineHeadroom = 128 << 10

// inline puts req's files inside sub when the master speaks
// wire.FeatureInline and they fit in wire.MaxInline: the source first, then
// the stdin in what is left (a large stdin keeps its stream while a small
// source rides in the Submit). Under a frame cap too small for that and
// the Submit's other fields, only what fits goes inline. It returns the
// files left for streams.
func (c *Client) inline(sub *wire.Submit, req Request) streams {
	st := streams{Source: true, Stdin: len(req.Stdin) > 0}
	if !wire.HasFeature(c.welcome.Features, wire.FeatureInline) {
		return st
	}
	room := wire.MaxInline
	if f := c.welcome.Limits.MaxFrame; f > 0 && f < wire.MaxInline+inlineHeadroom {
		e, err := wire.Encode(wire.MsgSubmit, ^uint64(0), sub)
		if err != nil {
			return st
		}
		// The envelope and the inline fields' keys, length prefixes and
		// sums take under 256 bytes.
		room = min(room, f-len(e.Body)-256)
	}
	if len(req.Source) <= room {
		sub.Inline.Set(wire.FileSource, req.Source, req.Seal)
		st.Source, room = false, room-len(req.Source)
	}
	if st.Stdin && len(req.Stdin) <= room {
		sub.Inline.Set(wire.FileStdin, req.Stdin, req.Seal)
		st.Stdin = false
	}
	return st
}

// sealRequest seals req's payloads under a fresh content key and checks
// the sealed sizes against the master's limits (which count ciphertext).
func (c *Client) sealRequest(req Request) (*jobSeal, Request, error) {
	js, nonce, err := c.newSubmitSeal()
	if err != nil {
		return nil, req, err
	}
	js.nonce = nonce
	if req, err = js.sealRequest(req); err != nil {
		return nil, req, err
	}
	l := c.welcome.Limits
	if l.MaxSource > 0 && int64(len(req.Source)) > l.MaxSource {
		return nil, req, fmt.Errorf("%w: sealed source is %d bytes, over the master's limit of %d", ErrBadInput, len(req.Source), l.MaxSource)
	}
	if l.MaxStdin > 0 && int64(len(req.Stdin)) > l.MaxStdin {
		return nil, req, fmt.Errorf("%w: sealed stdin is %d bytes, over the master's limit of %d", ErrBadInput, len(req.Stdin), l.MaxStdin)
	}
	return js, req, nil
}

// uploadUntilAnswered uploads the request's files while watching for an
// early answer: an Error (busy, no_slave, ...) stops the upload. On return
// with a nil error, the answer, if it came, is back in p.reply for await.
func (c *Client) uploadUntilAnswered(ctx context.Context, id uint64, p *call, name string, req Request, st streams) error {
	uctx, cancel := context.WithCancel(ctx)
	defer cancel()
	upErr := make(chan error, 1)
	go func() { upErr <- c.upload(uctx, id, name, req, st) }()
	select {
	case err := <-upErr:
		if err != nil {
			c.abandon(id, p)
		}
		return err
	case r := <-p.reply:
		p.reply <- r // only one answer is ever sent: the slot is free
		if r.job == nil {
			cancel() // refused: the master does not want the files
			<-upErr
			return nil
		}
		if err := <-upErr; err != nil {
			c.cancelOrphan(r.job.id)
			<-p.reply
			return err
		}
		return nil
	case <-ctx.Done():
		cancel()
		<-upErr
		c.abandon(id, p)
		return ctx.Err()
	}
}

// upload sends the files of request id that st names on file streams
// (the others travelled inline in the Submit).
func (c *Client) upload(ctx context.Context, id uint64, name string, req Request, st streams) error {
	total := int64(len(req.Source) + len(req.Stdin))
	var sent atomic.Int64
	if !st.Source {
		sent.Add(int64(len(req.Source)))
	}
	files := []struct {
		kind, name string
		data       []byte
		stream     bool
	}{{wire.FileSource, name, req.Source, st.Source}, {wire.FileStdin, "stdin", req.Stdin, st.Stdin}}
	for _, f := range files {
		if !f.stream {
			continue
		}
		hdr := wire.FileHeader{JobID: requestID(id), Kind: f.kind, Name: f.name, Size: int64(len(f.data)), Sealed: true}
		if !req.Seal {
			// A sealed payload authenticates every chunk end to end; only
			// plain files need the SHA-256.
			hdr = wire.NewFileHeader(requestID(id), f.kind, f.name, f.data)
		}
		var r io.Reader = bytes.NewReader(f.data)
		if req.Progress != nil {
			r = &progressReader{r: r, sent: &sent, total: total, fn: req.Progress}
		}
		if err := c.s.SendFile(ctx, hdr, r); err != nil {
			if cause := c.Err(); cause != nil {
				return c.lostErr(cause)
			}
			return fmt.Errorf("upload %s: %w", f.kind, err)
		}
	}
	return nil
}

// progressReader reports the bytes read through it.
type progressReader struct {
	r     io.Reader
	sent  *atomic.Int64
	total int64
	fn    func(sent, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(p.sent.Add(int64(n)), p.total)
	}
	return n, err
}

// outputBound is what a job may make this client buffer of its output:
// the job's output limit, else the master's, else DefaultMaxOutput. A
// sealed job's output is bounded after it is opened.
func outputBound(job wire.JobLimits, master wire.Limits) int64 {
	switch {
	case job.OutputBytes > 0:
		return job.OutputBytes
	case master.MaxOutput > 0:
		return master.MaxOutput
	}
	return DefaultMaxOutput
}

// SubmitRetry is [Client.Submit], retrying a busy answer after the
// master's retry_after (or half a second without one, plus up to a
// quarter more so that clients refused together do not return together)
// until ctx ends. It returns the job and how many busy answers it got.
func (c *Client) SubmitRetry(ctx context.Context, req Request) (*Job, int, error) {
	for retries := 0; ; retries++ {
		job, err := c.Submit(ctx, req)
		var re *RequestError
		if !errors.As(err, &re) || re.Code != wire.CodeBusy {
			return job, retries, err
		}
		wait := re.RetryAfter
		if wait <= 0 {
			wait = 500 * time.Millisecond
		}
		wait += time.Duration(rand.Int64N(int64(wait/4) + 1))
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, retries, ctx.Err()
		}
	}
}
