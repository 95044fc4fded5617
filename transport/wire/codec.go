package wire

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"

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

// checkBody reports whether v (a body struct or a pointer to one) has the Go
// type that t carries.
func checkBody(t MsgType, v any) error {
	want, err := NewBody(t)
	if err != nil {
		return err
	}
	wt := reflect.TypeOf(want)
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
	b, err := msgpack.Marshal(body)
	if err != nil {
		return Envelope{}, fmt.Errorf("wire: encode %v: %w", t, err)
	}
	return Envelope{Type: t, ID: id, Body: b}, nil
}

// Decode unmarshals e.Body into v, which must be a pointer to the struct
// e.Type carries (see [NewBody]). The body is checked by [Validate] first,
// so Decode is safe on bytes from the network, and every field against its
// limit after (an error wrapping [ErrFieldLimit]), so that what a peer can
// make the receiver keep per message is small. Unknown fields are ignored.
func Decode(e Envelope, v any) error {
	want, err := NewBody(e.Type)
	if err != nil {
		return err
	}
	if reflect.TypeOf(v) != reflect.TypeOf(want) {
		return fmt.Errorf("%w: %T for %v", ErrBodyType, v, e.Type)
	}
	if err := Validate(e.Body); err != nil {
		return fmt.Errorf("wire: %v body: %w", e.Type, err)
	}
	if err := msgpack.Unmarshal(e.Body, v); err != nil {
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
