package master_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// inlineClient dials a client session that announces the "inline" feature.
func (c *cluster) inlineClient(name string) *transport.Session {
	c.t.Helper()
	s, err := c.dialHello(c.issue(certs.RoleClient, name, "1.0"), false, wire.Hello{Features: []string{wire.FeatureInline}})
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// inlineSubmit is a Submit of file with src and stdin inline.
func inlineSubmit(file string, src, stdin []byte) wire.Submit {
	sub := wire.Submit{Language: wire.LanguageOf(file), FileName: file, SourceSize: int64(len(src)), StdinSize: int64(len(stdin))}
	sub.Inline.Set(wire.FileSource, src, false)
	if len(stdin) > 0 {
		sub.Inline.Set(wire.FileStdin, stdin, false)
	}
	return sub
}

// submitInline sends an inline Submit and returns the job id or the Error.
func submitInline(t *testing.T, s *transport.Session, reqID uint64, sub wire.Submit) (string, *wire.Error) {
	t.Helper()
	if err := s.Send(wire.MsgSubmit, reqID, sub); err != nil {
		t.Fatal(err)
	}
	return acceptedOrError(t, s, reqID)
}

// TestInlineRoundTrip: over mutual TLS, a Submit carrying its source and
// stdin inline runs like a streamed one: to a slave that announced
// "inline" the Assign carries them (with their SHA-256) and no file stream
// is opened; a slave without the feature gets them on file streams.
func TestInlineRoundTrip(t *testing.T) {
	for _, slaveInline := range []bool{true, false} {
		t.Run(fmt.Sprintf("slave inline %v", slaveInline), func(t *testing.T) {
			c := newCluster(t)
			var features []string
			if slaveInline {
				features = []string{wire.FeatureInline}
			}
			fs := c.fakeSlaveWith("s1", 2, false, features, "python")
			cs := c.inlineClient("alice")
			src := []byte("print('inline')\n")
			id, e := submitInline(t, cs, 1, inlineSubmit("a.py", src, []byte("42\n")))
			if e != nil {
				t.Fatalf("submit: %+v", e)
			}
			v := collect(t, cs, id)[id]
			if v.stdout.String() != string(src) || v.result.Status != wire.StatusOK {
				t.Fatalf("stdout %q result %+v", v.stdout.String(), v.result)
			}
			// A slave that answers before the master has noted its
			// files sent overtakes the running state.
			if st := fmt.Sprint(v.states); st != "[queued assigned running]" && st != "[queued assigned]" {
				t.Fatalf("states %v", v.states)
			}
			fs.mu.Lock()
			streams, inline, stdin := fs.streams, fs.inline, string(fs.files[id+"/stdin"])
			fs.mu.Unlock()
			wantStreams, wantInline := 2, 0
			if slaveInline {
				wantStreams, wantInline = 0, 1
			}
			if streams != wantStreams || inline != wantInline || stdin != "42\n" {
				t.Fatalf("slave got %d file streams, %d inline Assigns, stdin %q; want %d, %d, %q", streams, inline, stdin, wantStreams, wantInline, "42\n")
			}
		})
	}
}

// TestInlineStreamedToInlineSlave: a job whose files came on streams
// (an older client) goes to a slave that speaks "inline" in its Assign.
func TestInlineStreamedToInlineSlave(t *testing.T) {
	c := newCluster(t)
	fs := c.fakeSlaveWith("s1", 1, false, []string{wire.FeatureInline}, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "old", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	src := []byte("print('streamed')\n")
	id, e := submit(t, cs, 1, "a.py", src)
	if e != nil {
		t.Fatal(e)
	}
	if v := collect(t, cs, id)[id]; v.stdout.String() != string(src) {
		t.Fatalf("stdout %q", v.stdout.String())
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.streams != 0 || fs.inline != 1 {
		t.Fatalf("slave got %d streams, %d inline Assigns", fs.streams, fs.inline)
	}
}

// TestInlineRefusals: inline files are refused bad_request from a session
// that did not announce the feature, with a size or SHA-256 that does not
// match the Submit, and when a file comes both inline and on a stream
// (the stream first, or after); over wire.MaxInline the Submit does not
// decode and the session is closed.
func TestInlineRefusals(t *testing.T) {
	// The stream that comes first must still be waiting when its Submit
	// comes, however slow the machine.
	c := newCluster(t, func(cfg *master.Config) { cfg.Budget.Jobs.SubmitWait = time.Minute })
	c.fakeSlaveWith("s1", 4, true, []string{wire.FeatureInline}, "python")
	src := []byte("print(1)\n")
	refused := func(name string, s *transport.Session, reqID uint64, sub wire.Submit, want string) {
		t.Helper()
		if _, e := submitInline(t, s, reqID, sub); e == nil || e.Code != wire.CodeBadRequest || !strings.Contains(e.Message, want) {
			t.Errorf("%s: got %+v, want bad_request with %q", name, e, want)
		}
	}
	old, err := c.dial(c.issue(certs.RoleClient, "old", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	refused("no feature", old, 1, inlineSubmit("a.py", src, nil), `"inline" feature`)

	cs := c.inlineClient("alice")
	sub := inlineSubmit("a.py", src, nil)
	sub.SourceSize++
	refused("size", cs, 1, sub, "announced")
	sub = inlineSubmit("a.py", src, nil)
	sub.SourceSHA256 = nil
	refused("no sum", cs, 2, sub, "sha256")
	sub = inlineSubmit("a.py", src, nil)
	sub.Source = []byte("print(2)\n")
	refused("sum", cs, 3, sub, "SHA-256 mismatch")

	// Inline source, stdin announced for a stream, and then a source
	// stream as well: refused whichever the master reads first (the
	// stream travels beside the control stream, so either can: the
	// upload is refused when it comes after, the Submit when it comes
	// after its stream).
	sub = inlineSubmit("a.py", src, nil)
	sub.StdinSize = 3
	if err := cs.Send(wire.MsgSubmit, 4, sub); err != nil {
		t.Fatal(err)
	}
	sendFile(t, cs, wire.NewFileHeader("4", wire.FileSource, "a.py", src), src)
	if _, e := acceptedOrError(t, cs, 4); e == nil || e.Code != wire.CodeBadRequest ||
		!strings.Contains(e.Message, "both inline in the Submit and on a file stream") && !strings.Contains(e.Message, "both inline and on a file stream") {
		t.Errorf("inline and streamed source: got %+v", e)
	}

	// The stream first: it waits for its Submit, which is then refused.
	sendFile(t, cs, wire.NewFileHeader("5", wire.FileSource, "a.py", src), src)
	c.waitLog("file stream waits for its Submit", "job=5")
	refused("stream first", cs, 5, inlineSubmit("a.py", src, nil), "both inline and on a file stream")

	// The stream after a Submit whose files all came inline: the job is
	// queued with the inline source, the stream refused at once.
	id, e := submitInline(t, cs, 6, inlineSubmit("a.py", src, nil))
	if e != nil {
		t.Fatal(e)
	}
	sendFile(t, cs, wire.NewFileHeader("6", wire.FileSource, "a.py", src), src)
	c.waitLog("upload refused", "job=6", "carried its files inline")
	if id == "" {
		t.Fatal("no job id")
	}

	// Over MaxInline: the field limit refuses the message itself.
	big := inlineSubmit("a.py", bytes.Repeat([]byte("#"), wire.MaxInline+1), nil)
	if err := cs.Send(wire.MsgSubmit, 7, big); err != nil {
		t.Fatal(err)
	}
	if r := refusal(t, cs); r.Code != wire.CodeBadRequest || !strings.Contains(r.Reason, "at most 65536") {
		t.Errorf("over MaxInline: refusal %+v", r)
	}
}

// sendFile sends data on a file stream with header hdr.
func sendFile(t *testing.T, s *transport.Session, hdr wire.FileHeader, data []byte) {
	t.Helper()
	if err := s.SendFile(context.Background(), hdr, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// TestInlineChargedToBudget: inline bytes count against the key's upload
// budget (JobBudget.HeldBytesPerClient) exactly as streamed ones do, and
// are given back when the job ends.
func TestInlineChargedToBudget(t *testing.T) {
	c := newCluster(t, func(cfg *master.Config) {
		cfg.MaxHeldBytes = 1 << 20
		cfg.Budget.Jobs.HeldBytesPerClient = 2500
	})
	fs := c.fakeSlaveWith("s1", 1, true, []string{wire.FeatureInline}, "python")
	cs := c.inlineClient("alice")
	src := bytes.Repeat([]byte("#"), 1000)
	first, e := submitInline(t, cs, 1, inlineSubmit("a.py", src, nil)) // running: 1000 held
	if e != nil {
		t.Fatal(e)
	}
	a := <-fs.jobs
	if _, e := submitInline(t, cs, 2, inlineSubmit("b.py", src, nil)); e != nil { // queued: 2000 held
		t.Fatal(e)
	}
	if _, e := submitInline(t, cs, 3, inlineSubmit("c.py", src, nil)); e == nil || e.Code != wire.CodeBusy || !strings.Contains(e.Message, "this key holds") {
		t.Fatalf("third job: got %+v, want busy for the key's share", e)
	}
	// The first job ends: its 1000 bytes are given back, and a job fits.
	fs.finish(a)
	collect(t, cs, first)
	if _, e := submitInline(t, cs, 4, inlineSubmit("d.py", src, nil)); e != nil {
		t.Fatalf("after the first job ended: %+v", e)
	}
}

// TestInlineDurableRecord: the durable record of an inline job holds its
// source and stdin and their sums, and its Submit does not hold them a
// second time.
func TestInlineDurableRecord(t *testing.T) {
	c, st := durableCluster(t)
	c.fakeSlaveWith("s1", 1, true, []string{wire.FeatureInline}, "python")
	cs := c.inlineClient("alice")
	src, stdin := []byte("print('kept')\n"), []byte("in\n")
	id, e := submitInline(t, cs, 1, inlineSubmit("a.py", src, stdin))
	if e != nil {
		t.Fatal(e)
	}
	j, ok := st.Machine().Job(id)
	sum := sha256.Sum256(src)
	if !ok || string(j.Source) != string(src) || string(j.Stdin) != string(stdin) || !bytes.Equal(j.SrcSum, sum[:]) {
		t.Fatalf("record %v: source %q stdin %q", ok, j.Source, j.Stdin)
	}
	if j.Submit.Inline.Size() != 0 {
		t.Fatalf("the record's Submit holds %d inline bytes", j.Submit.Inline.Size())
	}
}

// TestInlineFewerWrites counts the write system calls of this process
// (client, master and slave sessions all live in it) per job, submitted
// one at a time, with files on streams and with files inline: the inline
// job must take fewer. The figures are logged.
func TestInlineFewerWrites(t *testing.T) {
	const jobs = 20
	run := func(inline bool) float64 {
		c := newCluster(t)
		var cs *transport.Session
		var features []string
		if inline {
			features = []string{wire.FeatureInline}
			cs = c.inlineClient("alice")
		} else {
			var err error
			if cs, err = c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, ""); err != nil {
				t.Fatal(err)
			}
		}
		c.fakeSlaveWith("s1", 1, false, features, "python")
		src := bytes.Repeat([]byte("x"), 2000)
		before := writeSyscalls(t)
		for i := uint64(1); i <= jobs; i++ {
			var id string
			var e *wire.Error
			if inline {
				id, e = submitInline(t, cs, i, inlineSubmit("a.py", src, nil))
			} else {
				id, e = submit(t, cs, i, "a.py", src)
			}
			if e != nil {
				t.Fatal(e)
			}
			recvUntil(t, cs, wire.MsgResult)
			if env := recvAny(t, cs); env.Type != wire.MsgJobState {
				t.Fatalf("job %s: %v after its Result", id, env.Type)
			}
		}
		return float64(writeSyscalls(t)-before) / jobs
	}
	streamed, inline := run(false), run(true)
	t.Logf("write system calls per job, client+master+slave: streamed %.1f, inline %.1f", streamed, inline)
	if inline >= streamed {
		t.Errorf("inline jobs take %.1f writes each, streamed ones %.1f", inline, streamed)
	}
}

// writeSyscalls reads this process's write system calls (syscw).
func writeSyscalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no syscw in /proc/self/io")
	return 0
}
