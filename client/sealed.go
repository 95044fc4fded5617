package client

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport/seal"
	"kiln/transport/wire"
)

// jobSeal is the client's side of a sealed job: the content key its source
// and stdin are sealed under, the key pair its output key is wrapped for
// (the session's, see outputPrivateKey), and the state of the current
// attempt's output. It is guarded by its Job's mutex.
type jobSeal struct {
	contentKey []byte
	priv       *ecdh.PrivateKey
	nonce      []byte   // what contentKey was derived from; nil: random
	language   string   // the job's, for aheadSlaves
	ahead      []string // the slaves its key was wrapped for in the Submit

	attempt    int                     // attempt whose output is being opened
	outKey     []byte                  // that attempt's output key, once unwrapped
	outWrapped []byte                  // the wrap outKey came from
	openers    [2]*seal.SequenceOpener // stdout, stderr
	labels     [2]string
}

// newJobSeal returns the sealing state of a job with a random content key
// whose output key is wrapped for priv.
func newJobSeal(priv *ecdh.PrivateKey) *jobSeal {
	return &jobSeal{contentKey: seal.NewContentKey(), priv: priv,
		labels: [2]string{seal.LabelStdout, seal.LabelStderr}}
}

// sealRequest returns req with its source and stdin sealed.
func (s *jobSeal) sealRequest(req Request) (Request, error) {
	var err error
	if req.Source, err = seal.Seal(s.contentKey, seal.LabelSource, req.Source); err != nil {
		return req, err
	}
	if len(req.Stdin) > 0 {
		if req.Stdin, err = seal.Seal(s.contentKey, seal.LabelStdin, req.Stdin); err != nil {
			return req, err
		}
	}
	return req, nil
}

// wrapFor checks a WrapRequest and wraps the content key for the slave it
// names. The slave's certificate must chain to the cluster CA, name that
// slave, and carry the sealing key offered: so the master cannot have the
// key wrapped for a key of its own without a certificate the CA issued.
func (s *jobSeal) wrapFor(keys *slaveKeys, jobID string, req wire.WrapRequest) ([]byte, error) {
	key, err := keys.get(req.Slave, req.SlaveCert)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(key, req.SealKey) {
		return nil, fmt.Errorf("the sealing key offered for slave %s is not the one in its certificate", req.Slave)
	}
	return seal.Wrap(s.contentKey, key, seal.InputContext(jobID))
}

// sealKeyOfSlave checks a slave's certificate (DER) at now and returns the
// sealing key it carries: it must chain to the cluster CA and name that
// slave, so the master cannot have a key wrapped for a key of its own
// without a certificate the CA issued.
func sealKeyOfSlave(ca *x509.Certificate, name string, der []byte, now time.Time) ([]byte, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("slave certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	opts := x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}
	if _, err := cert.Verify(opts); err != nil {
		return nil, fmt.Errorf("slave certificate does not verify against the cluster CA: %w", err)
	}
	id, err := auth.IdentityOf(cert)
	if err != nil {
		return nil, fmt.Errorf("slave certificate: %w", err)
	}
	if id.Role != wire.RoleSlave || id.Name != name {
		return nil, fmt.Errorf("the certificate is for %s %q, not slave %q", id.Role, id.Name, name)
	}
	key, err := certs.SealKeyOf(cert)
	if err != nil {
		return nil, fmt.Errorf("slave %s: %w", name, err)
	}
	return key, nil
}

// slaveKeys remembers the sealing keys of slave certificates that
// sealKeyOfSlave accepted, so that every job to the same slave does not
// parse and verify its certificate again (about 0.1 ms of the client's CPU
// per job). An entry is the exact certificate bytes and slave name that
// passed, and is used only until that certificate or the CA expires; a
// certificate or name never seen is checked in full. Safe for concurrent
// use; the zero value needs ca set.
type slaveKeys struct {
	ca  *x509.Certificate
	now func() time.Time // nil: time.Now
	mu  sync.Mutex
	m   map[string]slaveKey // name NUL certificate
}

type slaveKey struct {
	key   []byte
	until time.Time
}

// maxSlaveKeys bounds slaveKeys; past it the map starts over.
const maxSlaveKeys = 1024

func newSlaveKeys(ca *x509.Certificate) *slaveKeys { return &slaveKeys{ca: ca} }

// get returns the sealing key of slave name's certificate der, checked by
// sealKeyOfSlave unless the same passed before and has not expired.
func (k *slaveKeys) get(name string, der []byte) ([]byte, error) {
	now := time.Now()
	if k.now != nil {
		now = k.now()
	}
	id := name + "\x00" + string(der)
	k.mu.Lock()
	e, ok := k.m[id]
	k.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.key, nil
	}
	key, err := sealKeyOfSlave(k.ca, name, der, now)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	until := cert.NotAfter
	if k.ca.NotAfter.Before(until) {
		until = k.ca.NotAfter
	}
	k.mu.Lock()
	if k.m == nil || len(k.m) >= maxSlaveKeys {
		k.m = map[string]slaveKey{}
	}
	k.m[id] = slaveKey{key, until}
	k.mu.Unlock()
	return key, nil
}

// aheadSlaves remembers, per language, the slaves this session's sealed
// jobs last went to: name and certificate of each WrapRequest the client
// answered (its certificate passed sealKeyOfSlave), so that the next job's
// key is wrapped for them in its Submit (bound to a nonce of the job's,
// seal.SubmitInputContext) and the master can assign it to one of them
// without a WrapRequest round trip. At most n slaves per language, the
// most recent first, and maxAheadLanguages languages. Safe for concurrent
// use; a nil *aheadSlaves remembers nothing.
type aheadSlaves struct {
	n  int
	mu sync.Mutex
	m  map[string]*aheadLang
}

// aheadLang is what aheadSlaves keeps for one language: the slaves, and
// how the wraps in the Submits fared. A master that spreads jobs over
// more slaves than n (it takes the idlest: round robin among equals)
// rarely picks one of them, and each wrap costs two scalar
// multiplications: after aheadMissLimit first attempts in a row went to
// another slave, the next aheadSkip jobs of the language are not wrapped
// ahead, then it tries again.
type aheadLang struct {
	slaves []aheadSlave
	misses int // first attempts in a row assigned to a slave not wrapped for
	skip   int // jobs still to submit without wraps
}

const (
	aheadMissLimit = 8
	aheadSkip      = 64
)

type aheadSlave struct {
	name string
	cert []byte // DER, checked again (slaveKeys) at each use
}

// maxAheadLanguages bounds aheadSlaves; past it the map starts over.
const maxAheadLanguages = 64

// newAheadSlaves returns the memory of n slaves per language (see
// Config.SealAhead), or nil for none.
func newAheadSlaves(n int) *aheadSlaves {
	if n == 0 {
		n = DefaultSealAhead
	}
	if n < 0 {
		return nil
	}
	return &aheadSlaves{n: n}
}

// learn records that a job of lang went to slave name, whose certificate
// cert passed the checks; it replaces an older certificate of that name.
func (a *aheadSlaves) learn(lang, name string, cert []byte) {
	if a == nil || lang == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || (len(a.m) >= maxAheadLanguages && a.m[lang] == nil) {
		a.m = map[string]*aheadLang{}
	}
	al := a.m[lang]
	if al == nil {
		al = &aheadLang{}
		a.m[lang] = al
	}
	l := al.slaves
	for i, s := range l {
		if s.name == name && bytes.Equal(s.cert, cert) {
			if i > 0 { // most recent first
				copy(l[1:i+1], l[:i])
				l[0] = s
			}
			return
		}
	}
	// A slave has one certificate at a time: one of the same name is an
	// older one (re-issued), not wrapped for again.
	l = slices.DeleteFunc(l, func(s aheadSlave) bool { return s.name == name })
	l = append([]aheadSlave{{name, bytes.Clone(cert)}}, l...)
	al.slaves = l[:min(len(l), a.n)]
}

// list returns the slaves to wrap a job of lang for: none while wrapping
// ahead is skipped for lang.
func (a *aheadSlaves) list(lang string) []aheadSlave {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	al := a.m[lang]
	if al == nil {
		return nil
	}
	if al.skip > 0 {
		al.skip--
		return nil
	}
	return slices.Clone(al.slaves) // learn reorders al.slaves in place
}

// assigned records where the first attempt of a job whose key was wrapped
// in its Submit went: to one of the slaves wrapped for (a hit) or not.
func (a *aheadSlaves) assigned(js *jobSeal, slave string) {
	if a == nil || len(js.ahead) == 0 {
		return
	}
	hit := slices.Contains(js.ahead, slave)
	a.mu.Lock()
	defer a.mu.Unlock()
	al := a.m[js.language]
	switch {
	case al == nil:
	case hit:
		al.misses = 0
	default:
		if al.misses++; al.misses >= aheadMissLimit {
			al.misses, al.skip = 0, aheadSkip
		}
	}
}

// wrapInSubmit wraps the job's content key for the slaves its language's
// jobs last went to (aheadSlaves), each certificate checked again
// (slaveKeys: a certificate that expired is skipped), bound to a fresh
// nonce. It returns nothing when there is no such slave.
func (s *jobSeal) wrapInSubmit(keys *slaveKeys, ahead *aheadSlaves) (nonce []byte, wraps []wire.KeyWrap, err error) {
	slaves := ahead.list(s.language)
	if len(slaves) == 0 {
		return nil, nil, nil
	}
	nonce = make([]byte, wire.WrapNonceSize)
	rand.Read(nonce)
	context := seal.SubmitInputContext(nonce)
	for _, sl := range slaves {
		key, err := keys.get(sl.name, sl.cert)
		if err != nil {
			continue
		}
		w, err := seal.Wrap(s.contentKey, key, context)
		if err != nil {
			return nil, nil, err
		}
		wraps = append(wraps, wire.KeyWrap{Slave: sl.name, Key: w, SealKey: key})
	}
	if len(wraps) == 0 {
		return nil, nil, nil
	}
	for _, w := range wraps {
		s.ahead = append(s.ahead, w.Slave)
	}
	return nonce, wraps, nil
}

// startAttempt forgets the output state of an earlier attempt.
func (s *jobSeal) startAttempt(attempt int) {
	if attempt != s.attempt {
		s.attempt, s.outKey, s.outWrapped, s.openers = attempt, nil, nil, [2]*seal.SequenceOpener{}
	}
}

// takeKey unwraps a wrapped output key of the current attempt; every wrap
// seen in an attempt must hold the same key. A slave sends the same wrap
// on each stream's first message and in the Result: the bytes of the wrap
// already unwrapped are not unwrapped again (a scalar multiplication each),
// any other wrap is, and must hold the same key.
func (s *jobSeal) takeKey(jobID string, wrapped []byte) error {
	if s.outKey != nil && bytes.Equal(wrapped, s.outWrapped) {
		return nil
	}
	key, err := seal.UnwrapWith(wrapped, s.priv, seal.OutputContext(s.contentKey, jobID, s.attempt))
	if err != nil {
		return fmt.Errorf("output key: %w", err)
	}
	if s.outKey != nil && !bytes.Equal(key, s.outKey) {
		return fmt.Errorf("%w: two output keys in attempt %d", seal.ErrTampered, s.attempt)
	}
	if s.outKey == nil {
		s.outKey, s.outWrapped = key, bytes.Clone(wrapped)
	}
	return nil
}

// open authenticates one Output message and returns its plaintext.
func (s *jobSeal) open(jobID string, out wire.Output) ([]byte, error) {
	s.startAttempt(out.Attempt)
	if len(out.Key) > 0 {
		if err := s.takeKey(jobID, out.Key); err != nil {
			return nil, err
		}
	}
	i := int(out.Stream) - wire.StreamStdout
	if i < 0 || i >= len(s.openers) {
		return nil, fmt.Errorf("%w: output on stream %d", seal.ErrTampered, out.Stream)
	}
	if s.outKey == nil {
		return nil, fmt.Errorf("%w: output before its key", seal.ErrTampered)
	}
	if s.openers[i] == nil {
		o, err := seal.NewSequenceOpener(s.outKey, s.labels[i])
		if err != nil {
			return nil, err
		}
		s.openers[i] = o
	}
	p, _, err := s.openers[i].OpenNext(out.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.labels[i], err)
	}
	return p, nil
}

// errUnsealedResult reports a Result without an output key that claims
// more than a failure before the job ran.
var errUnsealedResult = errors.New("the result of a sealed job carries no output key")

// openResult checks a Result of the current attempt: both output streams
// ended with their last message, and the compiler output opens. It
// replaces res.CompileOutput with its plaintext. A Result without a key is
// accepted only for a job that failed, was cancelled or found no slave
// before any output, or for output_limit: the master ended the attempt at
// the job's output cap (docs/protocol.md). Then cut is true: the output
// shown was authenticated message by message and is a prefix of what the
// slave sealed, but its end and the status are the master's word, which
// it could as well have given by dropping the session.
func (s *jobSeal) openResult(jobID string, res *wire.Result) (cut bool, err error) {
	s.startAttempt(res.Attempt)
	if len(res.Key) == 0 {
		if res.Status == wire.StatusOutputLimit {
			res.CompileOutput, res.Verdict = nil, nil
			return true, nil
		}
		failed := res.Status == wire.StatusInternalError || res.Status == wire.StatusCancelled || res.Status == wire.StatusNoSlave
		if !failed || s.outKey != nil {
			return false, fmt.Errorf("%w: %w (status %s)", seal.ErrTampered, errUnsealedResult, res.Status)
		}
		res.CompileOutput = nil
		return false, nil
	}
	if err := s.takeKey(jobID, res.Key); err != nil {
		return false, err
	}
	for i, o := range s.openers {
		if o == nil {
			return false, fmt.Errorf("%s: %w: no output at all", s.labels[i], seal.ErrTruncated)
		}
		if err := o.Finish(); err != nil {
			return false, fmt.Errorf("%s: %w", s.labels[i], err)
		}
	}
	p, err := seal.Open(s.outKey, seal.LabelCompile, res.CompileOutput)
	if err != nil {
		return false, fmt.Errorf("compiler output: %w", err)
	}
	v, err := seal.Open(s.outKey, seal.LabelResult, res.Verdict)
	if err != nil {
		return false, fmt.Errorf("result: %w", err)
	}
	if !bytes.Equal(v, res.VerdictBytes()) {
		return false, fmt.Errorf("result: %w: status, exit code, times or sizes differ from what the slave sealed", seal.ErrTampered)
	}
	res.CompileOutput, res.Key, res.Verdict = p, nil, nil
	return false, nil
}
