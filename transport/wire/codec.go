package wire

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Errors returned by the codec. Match them with errors.Is.
var (
	// ErrFrameTooLarge reports a frame whose length prefix exceeds the cap.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrMalformed reports bytes that are not a valid frame or body.
	ErrMalformed = errors.New("malformed message")
	// ErrUnknownType reports a MsgType this build does not know.
	ErrUnknownType = errors.New("unknown message type")
	// ErrBodyType reports a body whose Go type does not match the MsgType.
	ErrBodyType = errors.New("body type does not match message type")
)

// Envelope is one message: its type, a request id (see docs/protocol.md)
// and the msgpack encoding of the body struct named by Type.
type Envelope struct {
	Type MsgType
	ID   uint64
	Body []byte
}

// String returns the name of the message type, e.g. "Hello", or "MsgType(42)".
func (t MsgType) String() string {
	if v, err := NewBody(t); err == nil {
		return reflect.TypeOf(v).Elem().Name()
	}
	return "MsgType(" + strconv.Itoa(int(t)) + ")"
}

// NewBody returns a pointer to a fresh zero body struct for t, e.g. a
// *Hello for MsgHello, or an error wrapping ErrUnknownType.
func NewBody(t MsgType) (any, error) {
	switch t {
	case MsgHello:
		return new(Hello), nil
	case MsgWelcome:
		return new(Welcome), nil
	case MsgRefused:
		return new(Refused), nil
	case MsgRegister:
		return new(Register), nil
	case MsgLoad:
		return new(Load), nil
	case MsgSubmit:
		return new(Submit), nil
	case MsgAccepted:
		return new(Accepted), nil
	case MsgError:
		return new(Error), nil
	case MsgJobState:
		return new(JobState), nil
	case MsgAssign:
		return new(Assign), nil
	case MsgOutput:
		return new(Output), nil
	case MsgResult:
		return new(Result), nil
	case MsgCancel:
		return new(Cancel), nil
	case MsgInfoRequest:
		return new(InfoRequest), nil
	case MsgInfo:
		return new(Info), nil
	case MsgAdminRequest:
		return new(AdminRequest), nil
	case MsgAdminReply:
		return new(AdminReply), nil
	case MsgWrapRequest:
		return new(WrapRequest), nil
	case MsgWrapped:
		return new(Wrapped), nil
	case MsgFileHeader:
		return new(FileHeader), nil
	case MsgAttach:
		return new(Attach), nil
	case MsgAttached:
		return new(Attached), nil
	case MsgListJobs:
		return new(ListJobs), nil
	case MsgJobList:
		return new(JobList), nil
	case MsgWraps:
		return new(Wraps), nil
	case MsgTestResult:
		return new(TestResult), nil
	}
	return nil, fmt.Errorf("%w %d", ErrUnknownType, t)
}

// MsgTypes lists every known message type in numeric order.
func MsgTypes() []MsgType {
	var ts []MsgType
	for t := MsgType(1); t != 0; t++ {
		if _, err := NewBody(t); err == nil {
			ts = append(ts, t)
		}
	}
	return ts
}

// bodyTypes is the pointer type NewBody returns for each message type,
// worked out once from NewBody and only read after: checking a body's
// type then allocates no zero body.
var bodyTypes = sync.OnceValue(func() map[MsgType]reflect.Type {
	m := map[MsgType]reflect.Type{}
	for t := MsgType(1); t != 0; t++ {
		if v, err := NewBody(t); err == nil {
			m[t] = reflect.TypeOf(v)
		}
	}
	return m
})

// bodyType returns the type NewBody(t) returns, without making one.
func bodyType(t MsgType) (reflect.Type, error) {
	if wt, ok := bodyTypes()[t]; ok {
		return wt, nil
	}
	return nil, fmt.Errorf("%w %d", ErrUnknownType, t)
}

// checkBody reports whether v (a body struct or a pointer to one) has the Go
// type that t carries.
func checkBody(t MsgType, v any) error {
	wt, err := bodyType(t)
	if err != nil {
		return err
	}
	if vt := reflect.TypeOf(v); vt != wt && vt != wt.Elem() {
		return fmt.Errorf("%w: %v for %v", ErrBodyType, vt, t)
	}
	return nil
}

// Encode marshals body, which must be the struct t carries or a pointer to
// it, into an Envelope.
func Encode(t MsgType, id uint64, body any) (Envelope, error) {
	if err := checkBody(t, body); err != nil {
		return Envelope{}, err
	}
	enc := encoders.Get().(*encoder)
	enc.buf.Reset()
	enc.enc.Reset(&enc.buf)
	err := enc.enc.Encode(body)
	b := bytes.Clone(enc.buf.Bytes()) // the body's only allocation
	if enc.buf.Cap() <= maxPooledEncoder {
		encoders.Put(enc)
	}
	if err != nil {
		return Envelope{}, fmt.Errorf("wire: encode %v: %w", t, err)
	}
	return Envelope{Type: t, ID: id, Body: b}, nil
}

// encoder is a msgpack encoder with the buffer it writes to, recycled
// between messages (encoders): a body then costs one allocation of its
// own size, where msgpack.Marshal grew a fresh buffer for each.
type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

// encoders holds idle encoders; one whose buffer grew past
// maxPooledEncoder (a large Info or Output) is dropped instead.
var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

const maxPooledEncoder = 64 << 10

// decoder is a msgpack decoder with the reader it reads a body from,
// recycled between messages (decoders) as msgpack.Unmarshal recycles
// its decoder but not its reader.
type decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

var decoders = sync.Pool{New: func() any {
	d := &decoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

// Decode unmarshals e.Body into v, which must be a pointer to the struct
// e.Type carries (see [NewBody]). The body is checked by [Validate] first,
// so Decode is safe on bytes from the network, and every field against its
// limit after (an error wrapping [ErrFieldLimit]), so that what a peer can
// make the receiver keep per message is small. Unknown fields are ignored.
func Decode(e Envelope, v any) error {
	want, err := bodyType(e.Type)
	if err != nil {
		return err
	}
	if reflect.TypeOf(v) != want {
		return fmt.Errorf("%w: %T for %v", ErrBodyType, v, e.Type)
	}
	if err := Validate(e.Body); err != nil {
		return fmt.Errorf("wire: %v body: %w", e.Type, err)
	}
	dec := decoders.Get().(*decoder)
	dec.r.Reset(e.Body)
	dec.dec.Reset(&dec.r)
	err = dec.dec.Decode(v)
	dec.r.Reset(nil) // keep no body alive in the pool
	decoders.Put(dec)
	if err != nil {
		return fmt.Errorf("wire: %v body: %w: %v", e.Type, ErrMalformed, err)
	}
	if err := checkFields(v); err != nil {
		return fmt.Errorf("wire: %v body: %w", e.Type, err)
	}
	return nil
}

// DecodeNew decodes e into a fresh body struct and returns the pointer,
// e.g. a *Hello for MsgHello.
func DecodeNew(e Envelope) (any, error) {
	v, err := NewBody(e.Type)
	if err != nil {
		return nil, err
	}
	if err := Decode(e, v); err != nil {
		return nil, err
	}
	return v, nil
}
