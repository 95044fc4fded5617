package master_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"kiln/auth"
	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// sessionLog is everything a raw client session heard about its jobs
// until the Result of each job it waits for: every JobState in order
// ("job:state"), the stdout of each job (reset at requeued, as the client
// does) and its Result.
type sessionLog struct {
	states  []string
	stdout  map[string]*bytes.Buffer
	results map[string]wire.Result
}

func listen(t *testing.T, s *transport.Session, names map[string]string, jobs ...string) sessionLog {
	t.Helper()
	l := sessionLog{stdout: map[string]*bytes.Buffer{}, results: map[string]wire.Result{}}
	for _, j := range jobs {
		l.stdout[j] = &bytes.Buffer{}
	}
	for len(l.results) < len(jobs) {
		env := recvAny(t, s)
		switch env.Type {
		case wire.MsgJobState:
			var st wire.JobState
			if err := wire.Decode(env, &st); err != nil {
				t.Fatal(err)
			}
			l.states = append(l.states, names[st.JobID]+":"+st.State)
			if b := l.stdout[st.JobID]; b != nil && st.State == wire.StateRequeued {
				b.Reset()
			}
		case wire.MsgOutput:
			var o wire.Output
			if err := wire.Decode(env, &o); err != nil {
				t.Fatal(err)
			}
			if b := l.stdout[o.JobID]; b != nil {
				b.Write(o.Data)
			}
		case wire.MsgResult:
			var r wire.Result
			if err := wire.Decode(env, &r); err != nil {
				t.Fatal(err)
			}
			l.results[r.JobID] = r
		}
	}
	return l
}

// TestQuietSessionHearsNoProgress: over mutual TLS, a client session that
// announced feature quiet has it echoed in Welcome and hears, of its jobs'
// states, only the requeued one that voids a lost attempt's output: no
// queued, assigned, running, nor the done after the Result (read up to the
// answer of a request sent after the Result). A session without the
// feature, beside it, hears them all.
func TestQuietSessionHearsNoProgress(t *testing.T) {
	c := newCluster(t)
	doomed := c.fakeSlave("doomed", 4, true, "python")
	dial := func(name string, features ...string) *transport.Session {
		t.Helper()
		b := c.issue(certs.RoleClient, name, "1.0")
		id, _ := auth.IdentityOf(b.Cert)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := transport.Dial(ctx, c.clientAddr, auth.ClientConfig(b, "127.0.0.1"), transport.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		w, err := transport.Hello(ctx, s, wire.Hello{Role: id.Role, Name: id.Name, Version: id.Version, Features: features})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := wire.HasFeature(w.Features, wire.FeatureQuiet), slices.Contains(features, wire.FeatureQuiet); got != want {
			t.Fatalf("%s: Welcome features %v, quiet echoed %v, want %v", name, w.Features, got, want)
		}
		return s
	}
	quiet, loud := dial("quiet", wire.FeatureQuiet), dial("loud")
	sessions := map[string]*transport.Session{"quiet": quiet, "loud": loud}
	first, names := map[string]string{}, map[string]string{}
	for name, s := range sessions {
		id, e := submit(t, s, 1, "job.py", []byte("print(1)"))
		if e != nil {
			t.Fatalf("%s: %+v", name, e)
		}
		first[name], names[id] = id, "first"
	}
	for range 2 {
		a := <-doomed.jobs
		doomed.sess.Send(wire.MsgOutput, 0, wire.Output{JobID: a.JobID, Attempt: 1, Stream: wire.StreamStdout, Data: []byte("partial")})
	}
	c.fakeSlave("rescuer", 4, false, "python")
	doomed.sess.Close()
	logs := map[string]sessionLog{}
	for name, s := range sessions {
		l := listen(t, s, names, first[name])
		r := l.results[first[name]]
		if r.Attempt != 2 || r.Slave != "rescuer" || r.Status != wire.StatusOK || l.stdout[first[name]].String() != "print(1)" {
			t.Fatalf("%s: result %+v, stdout %q: want attempt 2 on rescuer, the lost attempt's output void", name, r, l.stdout[first[name]])
		}
		// A request's answer, asked for after the Result, comes after
		// anything the master queued with the Result.
		if err := s.Send(wire.MsgInfoRequest, 9, wire.InfoRequest{}); err != nil {
			t.Fatal(err)
		}
		for {
			env := recvAny(t, s)
			if env.ID == 9 {
				break
			}
			if env.Type == wire.MsgJobState {
				var st wire.JobState
				wire.Decode(env, &st)
				l.states = append(l.states, names[st.JobID]+":"+st.State)
			}
		}
		logs[name] = l
	}
	if got := fmt.Sprint(logs["quiet"].states); got != "[first:requeued]" {
		t.Errorf("quiet session's states %s, want only [first:requeued]", got)
	}
	for _, want := range []string{"first:queued", "first:assigned", "first:requeued", "first:done"} {
		if !slices.Contains(logs["loud"].states, want) {
			t.Errorf("session without the feature: states %v lack %s", logs["loud"].states, want)
		}
	}
}
