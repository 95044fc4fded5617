package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// unhex decodes hex with spaces, for byte literals that read like a dump.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFrameBytes(t *testing.T) {
	tests := []struct {
		name string
		t    MsgType
		id   uint64
		body any
		want string
	}{
		{"hello", MsgHello, 0, Hello{Proto: 1, Role: "slave", Name: "s1", Version: "0.1.0"},
			"0000002e 93 01 00 c429" +
				"84 a5 70726f746f 01 a4 726f6c65 a5 736c617665 a4 6e616d65 a2 7331 a7 76657273696f6e a5 302e312e30"},
		{"cancel", MsgCancel, 0, &Cancel{JobID: "7"},
			"0000000c 93 0d 00 c407 81 a3 6a6f62 a1 37"},
		{"info request id 300", MsgInfoRequest, 300, InfoRequest{},
			"00000008 93 0e cd012c c401 80"},
		{"accepted id 2^32", MsgAccepted, 1 << 32, &Accepted{JobID: "J", Position: 200},
			"0000001a 93 07 cf0000000100000000 c40d 82 a3 6a6f62 a1 4a a3 706f73 ccc8"},
		// An inline file is two flat keys of the Submit ("source",
		// "source_sha256"); an empty Inline adds no key at all.
		{"submit inline", MsgSubmit, 1, &Submit{Language: "c", SourceSize: 2, Inline: Inline{Source: []byte("hi"), SourceSHA256: []byte{1}}},
			"00000060 93 06 01 c45b" +
				"87 a4 6c616e67 a1 63 a4 66696c65 a0 ab 736f757263655f73697a65 d30000000000000002 aa 737464696e5f73697a65 d30000000000000000" +
				" a6 6c696d697473 80 a6 736f75726365 c402 6869 ad 736f757263655f736861323536 c401 01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Encode(tt.t, tt.id, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteFrame(&buf, e); err != nil {
				t.Fatal(err)
			}
			want := unhex(t, tt.want)
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("frame\n got % x\nwant % x", buf.Bytes(), want)
			}
			got, err := ReadFrame(bytes.NewReader(want), MaxFrame)
			if err != nil {
				t.Fatal(err)
			}
			if got.Type != tt.t || got.ID != tt.id || !bytes.Equal(got.Body, e.Body) {
				t.Fatalf("ReadFrame = %+v, want %+v", got, e)
			}
			v, err := DecodeNew(got)
			if err != nil {
				t.Fatal(err)
			}
			wantV := reflect.ValueOf(tt.body)
			if wantV.Kind() == reflect.Pointer {
				wantV = wantV.Elem()
			}
			if !reflect.DeepEqual(reflect.ValueOf(v).Elem().Interface(), wantV.Interface()) {
				t.Fatalf("decoded %+v, want %+v", v, tt.body)
			}
		})
	}
}

func TestEveryTypeRoundTrips(t *testing.T) {
	types := MsgTypes()
	if len(types) != 26 {
		t.Fatalf("MsgTypes() has %d types, want 26", len(types))
	}
	for _, mt := range types {
		body, _ := NewBody(mt)
		if name := mt.String(); reflect.TypeOf(body).Elem().Name() != name {
			t.Errorf("%d.String() = %q", mt, name)
		}
		e, err := Encode(mt, 9, body)
		if err != nil {
			t.Fatalf("%v: %v", mt, err)
		}
		var buf bytes.Buffer
		if err := WriteFrame(&buf, e); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFrame(&buf, MaxFrame)
		if err != nil {
			t.Fatalf("%v: %v", mt, err)
		}
		if _, err := DecodeNew(got); err != nil {
			t.Fatalf("%v: %v", mt, err)
		}
	}
	if got := MsgType(200).String(); got != "MsgType(200)" {
		t.Errorf("String of unknown type = %q", got)
	}
}

func TestBodyTypeChecked(t *testing.T) {
	if _, err := Encode(MsgHello, 0, &Welcome{}); !errors.Is(err, ErrBodyType) {
		t.Errorf("Encode(Hello, *Welcome) = %v, want ErrBodyType", err)
	}
	if _, err := Encode(MsgType(99), 0, &Welcome{}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Encode(99) = %v, want ErrUnknownType", err)
	}
	e, _ := Encode(MsgHello, 0, Hello{Role: "client"})
	if err := Decode(e, &Welcome{}); !errors.Is(err, ErrBodyType) {
		t.Errorf("Decode(Hello into *Welcome) = %v, want ErrBodyType", err)
	}
	if err := Decode(e, Hello{}); !errors.Is(err, ErrBodyType) {
		t.Errorf("Decode(Hello into Hello value) = %v, want ErrBodyType", err)
	}
	e.Type = 99
	if err := Decode(e, &Hello{}); !errors.Is(err, ErrUnknownType) {
		t.Errorf("Decode(type 99) = %v, want ErrUnknownType", err)
	}
	bad := Envelope{Type: MsgHello, Body: unhex(t, "81 a5 70726f746f a3 616263")} // proto: "abc"
	if err := Decode(bad, &Hello{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("Decode(proto string) = %v, want ErrMalformed", err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  error
	}{
		{"empty", "", io.EOF},
		{"short prefix", "0000", io.ErrUnexpectedEOF},
		{"short body", "00000005 93 01 00 c4", io.ErrUnexpectedEOF},
		{"too large", "00100001", ErrFrameTooLarge},
		{"4 GiB length", "ffffffff", ErrFrameTooLarge},
		{"zero length", "00000000", ErrMalformed},
		{"not an array", "00000001 c0", ErrMalformed},
		{"array of 2", "00000003 92 01 00", ErrMalformed},
		{"array of 4", "00000007 94 01 00 c40180 c0", ErrMalformed},
		{"invalid code", "00000001 c1", ErrMalformed},
		{"trailing bytes", "00000007 93 01 00 c401 80 00", ErrMalformed},
		{"body is str", "00000005 93 01 00 a1 80", ErrMalformed},
		{"type not an int", "00000005 93 c3 00 c401 80", ErrMalformed},
		{"negative id", "00000005 93 01 ff c401 80", ErrMalformed},
		{"negative int8 id", "00000006 93 01 d0ff c401 80", ErrMalformed},
		{"type over 255", "00000007 93 cd0100 00 c401 80", ErrMalformed},
		{"body not msgpack", "00000005 93 01 00 c401 c1", ErrMalformed},
		{"body two values", "00000006 93 01 00 c402 8080", ErrMalformed},
		{"empty body", "00000004 93 01 00 c400", ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(unhex(t, tt.input)), MaxFrame)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ReadFrame = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadFrameChecksLengthBeforeReading(t *testing.T) {
	// The reader fails after the prefix: a too-large frame must be
	// rejected without trying to read (or allocate) its body.
	r := io.MultiReader(bytes.NewReader(unhex(t, "7fffffff")), iotest.ErrReader(errors.New("read past prefix")))
	if _, err := ReadFrame(r, MaxFrame); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame = %v, want ErrFrameTooLarge", err)
	}
	if _, err := ReadFrame(bytes.NewReader(unhex(t, "00000010")), 15); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame over a small max = %v, want ErrFrameTooLarge", err)
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	e, err := Encode(MsgOutput, 0, &Output{Data: make([]byte, MaxFrame)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, e); !errors.Is(err, ErrFrameTooLarge) || buf.Len() != 0 {
		t.Fatalf("WriteFrame = %v, %d bytes written; want ErrFrameTooLarge, none", err, buf.Len())
	}
	e.Body = e.Body[:MaxFrame-64]
	if _, err := AppendFrame(nil, e, MaxFrame); err != nil {
		t.Fatalf("AppendFrame just under the cap: %v", err)
	}
}

func TestFileHeaderCheck(t *testing.T) {
	h := NewFileHeader("1", FileSource, "a.c", []byte("int main(){}"))
	if err := h.Check(); err != nil {
		t.Fatal(err)
	}
	if h.Size != 12 || len(h.SHA256) != 32 {
		t.Fatalf("NewFileHeader = %+v", h)
	}
	bad := h
	bad.Size = -1
	if err := bad.Check(); !errors.Is(err, ErrMalformed) {
		t.Errorf("negative size: %v", err)
	}
	bad = h
	bad.SHA256 = bad.SHA256[:31]
	if err := bad.Check(); !errors.Is(err, ErrMalformed) {
		t.Errorf("short sha256: %v", err)
	}
}

func TestCheckInline(t *testing.T) {
	src, in := []byte("int main(){}"), []byte("42\n")
	var ok Inline
	ok.Set(FileSource, src, false)
	ok.Set(FileStdin, in, false)
	if err := CheckInline(ok, 12, 3, false); err != nil {
		t.Fatal(err)
	}
	if ok.Size() != 15 || len(ok.SourceSHA256) != 32 || len(ok.StdinSHA256) != 32 {
		t.Fatalf("Set = %+v", ok)
	}
	var sealed Inline
	sealed.Set(FileSource, src, true)
	if sealed.SourceSHA256 != nil || CheckInline(sealed, 12, 0, true) != nil {
		t.Fatalf("sealed inline file: %+v", sealed)
	}
	if err := CheckInline(Inline{}, 12, 3, false); err != nil {
		t.Errorf("no inline file: %v", err)
	}
	bad := func(name string, in Inline, src, stdin int64, sealed bool) {
		t.Helper()
		if err := CheckInline(in, src, stdin, sealed); !errors.Is(err, ErrInline) {
			t.Errorf("%s: %v, want ErrInline", name, err)
		}
	}
	bad("size differs", ok, 13, 3, false)
	bad("stdin size differs", ok, 12, 2, false)
	bad("no sum, not sealed", sealed, 12, 0, false)
	flipped := ok
	flipped.Source = append([]byte{}, src...)
	flipped.Source[0] ^= 1
	bad("flipped byte", flipped, 12, 3, false)
	bad("flipped byte, sealed with a sum", flipped, 12, 3, true)
	short := ok
	short.StdinSHA256 = short.StdinSHA256[:31]
	bad("short sum", short, 12, 3, false)
}
