package master_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// dialFeatures is dial with Hello.Features; it returns the Welcome too.
func (c *cluster) dialFeatures(b *certs.Bundle, slavePort bool, features []string) (*transport.Session, wire.Welcome) {
	c.t.Helper()
	addr := c.srv.ClientAddr()
	if slavePort {
		addr = c.srv.SlaveAddr()
	}
	id, err := auth.IdentityOf(b.Cert)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := transport.Dial(ctx, addr, auth.ClientConfig(b, "127.0.0.1"), transport.Config{KeepAliveInterval: 250 * time.Millisecond})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close() })
	w, err := transport.Hello(ctx, s, wire.Hello{Role: id.Role, Name: id.Name, Version: id.Version, Features: features})
	if err != nil {
		c.t.Fatal(err)
	}
	return s, w
}

// submitRaw sends sub with its source (and stdin, when given) and returns
// the job id or the Error.
func submitRaw(t *testing.T, s *transport.Session, reqID uint64, sub wire.Submit, src, stdin []byte) (string, *wire.Error) {
	t.Helper()
	sub.SourceSize, sub.StdinSize = int64(len(src)), int64(len(stdin))
	if err := s.Send(wire.MsgSubmit, reqID, sub); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		kind string
		data []byte
	}{{wire.FileSource, src}, {wire.FileStdin, stdin}} {
		if len(f.data) == 0 {
			continue
		}
		sum := sha256.Sum256(f.data)
		hdr := wire.FileHeader{JobID: strconv.FormatUint(reqID, 10), Kind: f.kind, Name: sub.FileName, Size: int64(len(f.data)), SHA256: sum[:]}
		if err := s.SendFile(context.Background(), hdr, bytes.NewReader(f.data)); err != nil {
			return "", &wire.Error{Code: "send failed"}
		}
	}
	return acceptedOrError(t, s, reqID)
}

// The master checks a Submit's language, extension and options against
// what the registered slaves announced, and lists configured languages in
// Info with their extensions and options.
func TestLanguagesFromRegistration(t *testing.T) {
	c := newCluster(t)
	sl, _ := c.dialFeatures(c.issue(certs.RoleSlave, "s1", "1.0"), true, nil)
	reg := wire.Register{Slots: 1, OS: "linux", Toolchains: []wire.Toolchain{
		{Language: "bash", Compiler: "GNU bash 5", Path: "/bin/bash", Extensions: []string{".sh"}, Hash: "h"},
		{Language: "cpp", Compiler: "g++ 12", Path: "/usr/bin/g++", Extensions: []string{".cpp", ".cc"}, Options: []string{"-O2", "-std=c++20"}},
	}}
	if err := sl.Send(wire.MsgRegister, 0, reg); err != nil {
		t.Fatal(err)
	}
	sl.Send(wire.MsgLoad, 0, wire.Load{Slots: 1})
	c.waitLog("slave registered", "peer=s1")
	cs, _ := c.dialFeatures(c.issue(certs.RoleClient, "alice", "1.0"), false, nil)
	for i, tc := range []struct {
		sub  wire.Submit
		code string // "" accepted
		msg  string
	}{
		{wire.Submit{Language: "bash", FileName: "x.sh"}, "", ""},
		{wire.Submit{Language: "bash", FileName: "x.py"}, wire.CodeBadRequest, "not a bash source (.sh)"},
		{wire.Submit{Language: "cpp", FileName: "x.CC", Options: []string{"-std=c++20"}}, "", ""},
		{wire.Submit{Language: "cpp", FileName: "x.cpp", Options: []string{"-fplugin=evil.so"}}, wire.CodeBadRequest, "not allowed"},
		{wire.Submit{Language: "cpp", FileName: "x.sh"}, wire.CodeBadRequest, "not a cpp source"},
		{wire.Submit{Language: "c", FileName: "x.cpp"}, wire.CodeBadRequest, "not a c source"},
		{wire.Submit{Language: "", FileName: "x"}, wire.CodeBadRequest, "no language"},
		{wire.Submit{Language: "cobol", FileName: "x.cob"}, wire.CodeNoSlave, "no connected slave runs cobol"},
	} {
		_, e := submitRaw(t, cs, uint64(i+1), tc.sub, []byte("echo hi\n"), nil)
		switch {
		case tc.code == "" && e != nil:
			t.Errorf("%+v refused: %+v", tc.sub, e)
		case tc.code != "" && (e == nil || e.Code != tc.code || !strings.Contains(e.Message, tc.msg)):
			t.Errorf("%+v: got %+v, want %s %q", tc.sub, e, tc.code, tc.msg)
		}
	}
	info := c.srv.Info()
	var names []string
	for _, li := range info.Languages {
		names = append(names, li.Language)
		if li.Language == "cpp" && !slices.Contains(li.Options, "-std=c++20") {
			t.Errorf("cpp info %+v lacks the options", li)
		}
		if li.Language == "bash" && !slices.Equal(li.Extensions, []string{".sh"}) {
			t.Errorf("bash info %+v", li)
		}
	}
	if !slices.Equal(names, []string{"cpp", "bash"}) {
		t.Errorf("info languages %v, want built-in first then configured", names)
	}
}

// Features are negotiated: the master echoes those it speaks; a test
// batch needs the feature on the client's session and a slave that
// announced it.
func TestTestsFeatureNegotiated(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("old", 1, false, "c") // announces no features
	_, w := c.dialFeatures(c.issue(certs.RoleClient, "new", "1.0"), false, []string{"bogus", wire.FeatureTests})
	if !slices.Equal(w.Features, []string{wire.FeatureTests}) {
		t.Fatalf("welcome features %v, want [tests]", w.Features)
	}
	old, w := c.dialFeatures(c.issue(certs.RoleClient, "oldclient", "1.0"), false, nil)
	if len(w.Features) != 0 {
		t.Fatalf("welcome features %v for a Hello without any", w.Features)
	}
	batch := wire.Submit{Language: "c", FileName: "x.c", Tests: 2}
	if _, e := submitRaw(t, old, 1, batch, []byte("int main(){}"), []byte("bundle")); e == nil || e.Code != wire.CodeBadRequest || !strings.Contains(e.Message, "feature") {
		t.Fatalf("batch from a session without the feature: %+v", e)
	}
	cs, _ := c.dialFeatures(c.issue(certs.RoleClient, "batcher", "1.0"), false, []string{wire.FeatureTests})
	if _, e := submitRaw(t, cs, 2, batch, []byte("int main(){}"), []byte("bundle")); e == nil || e.Code != wire.CodeNoSlave || !strings.Contains(e.Message, "judges test batches") {
		t.Fatalf("batch with only old slaves: %+v", e)
	}
	if _, e := submitRaw(t, cs, 3, wire.Submit{Language: "c", FileName: "x.c", Tests: wire.MaxTests + 1}, []byte("int main(){}"), []byte("b")); e == nil || e.Code != wire.CodeBadRequest {
		t.Fatalf("batch over the bound: %+v", e)
	}
}

// A job with compiler options goes only to a slave whose toolchain allows
// them all; when none does, it is refused.
func TestOptionsPickTheSlave(t *testing.T) {
	c := newCluster(t)
	register := func(name string, opts ...string) *transport.Session {
		sl, _ := c.dialFeatures(c.issue(certs.RoleSlave, name, "1.0"), true, nil)
		sl.Send(wire.MsgRegister, 0, wire.Register{Slots: 4, OS: "linux", Toolchains: []wire.Toolchain{
			{Language: "cpp", Compiler: "g++", Extensions: []string{".cpp"}, Options: opts}}})
		sl.Send(wire.MsgLoad, 0, wire.Load{Slots: 4})
		c.waitLog("slave registered", "peer="+name)
		var wg sync.WaitGroup
		wg.Go(func() { // take the job files
			for {
				_, body, err := sl.AcceptFile(context.Background())
				if err != nil {
					return
				}
				io.Copy(io.Discard, body)
				body.Close()
			}
		})
		t.Cleanup(func() { sl.Close(); wg.Wait() })
		return sl
	}
	register("old", "-O2")
	modern := register("modern", "-O2", "-std=c++20")
	cs, _ := c.dialFeatures(c.issue(certs.RoleClient, "alice", "1.0"), false, nil)
	for i := range 3 {
		if _, e := submitRaw(t, cs, uint64(i+1), wire.Submit{Language: "cpp", FileName: "a.cpp", Options: []string{"-std=c++20"}}, []byte("int main(){}"), nil); e != nil {
			t.Fatalf("submit %d: %+v", i, e)
		}
	}
	for got := 0; got < 3; {
		if env := recvAny(t, modern); env.Type == wire.MsgAssign {
			got++
		}
	}
	if _, e := submitRaw(t, cs, 9, wire.Submit{Language: "cpp", FileName: "a.cpp", Options: []string{"-std=c++20", "-O3"}}, []byte("int main(){}"), nil); e == nil || e.Code != wire.CodeBadRequest {
		t.Fatalf("an option no slave allows: %+v", e)
	}
}
