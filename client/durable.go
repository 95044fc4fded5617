package client

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"kiln/transport/seal"
	"kiln/transport/wire"
)

// Durable jobs: a job outlives the session that submitted it. [Client.Attach]
// finds a job again from any session of the same key, [Client.Reattach]
// carries a job over to a new session after the old one was lost, and
// [Client.Jobs] lists the key's jobs.
//
// A sealed job's keys are derived from the client's private key and a
// random nonce sent in Submit (and kept by the master): another process
// holding the same bundle derives them again from the nonce that Attached
// returns, and nobody without the bundle can. See docs/security.md.

// jobKeyInfo labels the derivation of a job's keys; outputKeyInfo that
// of the bundle's output key pair.
const (
	jobKeyInfo    = "kiln job keys v1"
	outputKeyInfo = "kiln client output key v1"
)

// jobSecret is what job keys are derived from: the bundle's private key
// (PKCS #8), or nil when the key cannot be marshalled (the jobs then get
// random keys and cannot be opened by another process).
func jobSecret(key any) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil
	}
	return b
}

// jobKeys derives the keys of the job with this nonce: its content key,
// and the X25519 private key that jobs submitted before the output key was
// per bundle used (kept for attaching those; parsing it costs a scalar
// multiplication, so it is returned as bytes).
func jobKeys(secret, nonce []byte) (contentKey, legacyPriv []byte, err error) {
	okm, err := hkdf.Key(sha256.New, secret, nonce, jobKeyInfo, 2*seal.KeySize)
	if err != nil {
		return nil, nil, fmt.Errorf("client: job keys: %w", err)
	}
	return okm[:seal.KeySize], okm[seal.KeySize:], nil
}

// outputPrivateKey returns the X25519 key pair every sealed job of a
// bundle has its output key wrapped for: derived from the bundle's secret,
// so any process holding the bundle has it, or random (for this session
// only) when there is no secret. See docs/security.md ("Keys").
func outputPrivateKey(secret []byte) (*ecdh.PrivateKey, error) {
	if secret == nil {
		return seal.NewPrivateKey()
	}
	k, err := hkdf.Key(sha256.New, secret, nil, outputKeyInfo, seal.KeySize)
	if err != nil {
		return nil, fmt.Errorf("client: output key: %w", err)
	}
	return seal.ParsePrivateKey(k)
}

// outputKey returns the session's output key pair, made at its first
// sealed job: one scalar multiplication per session instead of one per job.
func (c *Client) outputKey() (*ecdh.PrivateKey, error) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.outPriv == nil {
		k, err := outputPrivateKey(c.jobSecret)
		if err != nil {
			return nil, err
		}
		c.outPriv = k
	}
	return c.outPriv, nil
}

// derivedSeal returns the sealing state of the job with this nonce: its
// content key, and priv as its output key pair.
func derivedSeal(secret, nonce []byte, priv *ecdh.PrivateKey) (*jobSeal, error) {
	ck, _, err := jobKeys(secret, nonce)
	if err != nil {
		return nil, err
	}
	return &jobSeal{contentKey: ck, priv: priv, nonce: nonce,
		labels: [2]string{seal.LabelStdout, seal.LabelStderr}}, nil
}

// newSubmitSeal returns the sealing state of a new job and the nonce to
// send in Submit (nil when keys are random).
func (c *Client) newSubmitSeal() (*jobSeal, []byte, error) {
	priv, err := c.outputKey()
	if err != nil {
		return nil, nil, err
	}
	if c.jobSecret == nil {
		return newJobSeal(priv), nil, nil
	}
	nonce := make([]byte, 32)
	rand.Read(nonce)
	js, err := derivedSeal(c.jobSecret, nonce, priv)
	return js, nonce, err
}

// attachedSeal returns the sealing state of an attached job from its
// nonce, after checking that its client key is this bundle's output key
// (or, for a job submitted when output keys were per job, the one the
// nonce gives).
func (c *Client) attachedSeal(att wire.Attached) (*jobSeal, error) {
	if c.jobSecret == nil || len(att.KeyNonce) == 0 {
		return nil, ErrNotYours
	}
	priv, err := c.outputKey()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(priv.PublicKey().Bytes(), att.ClientKey) {
		_, legacy, err := jobKeys(c.jobSecret, att.KeyNonce)
		if err != nil {
			return nil, err
		}
		if priv, err = seal.ParsePrivateKey(legacy); err != nil {
			return nil, err
		}
		if !bytes.Equal(priv.PublicKey().Bytes(), att.ClientKey) {
			return nil, ErrNotYours
		}
	}
	return derivedSeal(c.jobSecret, att.KeyNonce, priv)
}

// AttachedState returns the job's state when it was attached (queued,
// assigned, running, done or failed), or "" for a job this session
// submitted.
func (j *Job) AttachedState() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.attachedState
}

// attachCall is a pending Attach: the job it carries over, if any.
type attachCall struct {
	old *Job
}

// ErrNotYours is the answer to an Attach of a sealed job whose keys this
// client cannot derive (another bundle's job, or a nonce that does not
// give the job's client key).
var ErrNotYours = errors.New("the job's keys are not this bundle's")

// Attach finds job id again, submitted by this key from any session, and
// returns it as a [Job] of this session: its state, its current attempt's
// output from the first chunk and its result follow as for a job this
// session submitted. A job of another key, or one no longer kept, fails
// with a *[RequestError] of code not_found.
func (c *Client) Attach(ctx context.Context, id string) (*Job, error) {
	return c.attach(ctx, id, &attachCall{})
}

// Reattach carries old, a job of a session that was lost, over to this
// session: the returned Job starts with old's output and skips what old
// had already received, so that its Events continue where old's stopped.
func (c *Client) Reattach(ctx context.Context, old *Job) (*Job, error) {
	return c.attach(ctx, old.id, &attachCall{old: old})
}

func (c *Client) attach(ctx context.Context, id string, ac *attachCall) (*Job, error) {
	rid := c.nextID.Add(1)
	p := &call{attach: ac, reply: make(chan reply, 1)}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.lostErr(c.err)
	}
	c.pending[rid] = p
	c.mu.Unlock()
	if err := c.send(ctx, wire.MsgAttach, rid, wire.Attach{JobID: id}); err != nil {
		c.unregister(rid)
		return nil, err
	}
	r, err := c.await(ctx, rid, p)
	if err != nil {
		return nil, err
	}
	if r.err != nil {
		return nil, r.err
	}
	if r.env.Type != wire.MsgAttached || r.job == nil {
		return nil, fmt.Errorf("attach: unexpected answer type %d", r.env.Type)
	}
	return r.job, nil
}

// attachedJob builds the Job an Attached answer announces. It runs on
// the reader goroutine, before any message of the job is read.
func (c *Client) attachedJob(ac *attachCall, att wire.Attached) (*Job, error) {
	if old := ac.old; old != nil {
		j := newJob(c, att.JobID, old.maxOutput)
		old.mu.Lock()
		j.seal, j.attempt, j.truncated = old.seal, old.attempt, old.truncated
		j.stdout.Write(old.stdout.Bytes())
		j.stderr.Write(old.stderr.Bytes())
		j.compile.Write(old.compile.Bytes())
		j.seen, j.skipTo = true, old.nextSeq
		old.mu.Unlock()
		return j, nil
	}
	j := newJob(c, att.JobID, c.welcome.Limits.MaxOutput)
	j.attachedState = att.State
	if !att.Sealed {
		return j, nil
	}
	js, err := c.attachedSeal(att)
	if errors.Is(err, ErrNotYours) {
		return nil, &SealError{Job: att.JobID, Op: "attach", Err: err}
	}
	if err != nil {
		return nil, err
	}
	js.language = att.Language
	j.seal = js
	return j, nil
}

// Jobs lists the jobs of this client's key (every job for an admin key),
// newest first, at most wire.MaxJobList; more reports whether there were
// more.
func (c *Client) Jobs(ctx context.Context) (jobs []wire.JobSummary, more bool, err error) {
	env, err := c.request(ctx, wire.MsgListJobs, wire.ListJobs{})
	if err != nil {
		return nil, false, err
	}
	if env.Type != wire.MsgJobList {
		return nil, false, fmt.Errorf("jobs: unexpected answer type %d", env.Type)
	}
	var l wire.JobList
	if err := wire.Decode(env, &l); err != nil {
		return nil, false, err
	}
	return l.Jobs, l.Truncated, nil
}

// WrapAhead wraps the content key of a sealed job for every slave the
// master names as able to run its language, after checking each slave's
// certificate against the cluster CA as for a WrapRequest, and hands the
// wraps to the master: it can then dispatch the job while this client is
// away. It returns how many slaves the key was wrapped for; a slave that
// joins later can get the job only while its client is connected.
func (c *Client) WrapAhead(ctx context.Context, j *Job, language string) (int, error) {
	j.mu.Lock()
	js := j.seal
	j.mu.Unlock()
	if js == nil {
		return 0, nil
	}
	env, err := c.request(ctx, wire.MsgInfoRequest, wire.InfoRequest{SealFor: language})
	if err != nil {
		return 0, err
	}
	var info wire.Info
	if env.Type != wire.MsgInfo {
		return 0, fmt.Errorf("wrap ahead: unexpected answer type %d", env.Type)
	}
	if err := wire.Decode(env, &info); err != nil {
		return 0, err
	}
	var w wire.Wraps
	w.JobID = j.id
	for _, s := range info.SealSlaves {
		key, err := c.keys.get(s.Name, s.Cert)
		if err != nil {
			c.log.Warn("not wrapping a job key for a slave", "slave", s.Name, "err", err)
			continue
		}
		wrapped, err := seal.Wrap(js.contentKey, key, seal.InputContext(j.id))
		if err != nil {
			return 0, err
		}
		w.Wraps = append(w.Wraps, wire.KeyWrap{Slave: s.Name, Key: wrapped})
	}
	if len(w.Wraps) == 0 {
		return 0, nil
	}
	if _, err := c.request(ctx, wire.MsgWraps, w); err != nil {
		return 0, err
	}
	return len(w.Wraps), nil
}
