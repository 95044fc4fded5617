package master_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"kiln/certs"
	"kiln/transport"
	"kiln/transport/wire"
)

// adminSession is an admin (or other) key's raw session on the client port.
type adminSession struct {
	t    *testing.T
	s    *transport.Session
	next uint64
}

func (c *cluster) admin(role, name string) *adminSession {
	c.t.Helper()
	s, err := c.dial(c.issue(role, name, "1.0"), false, "")
	if err != nil {
		c.t.Fatal(err)
	}
	return &adminSession{t: c.t, s: s}
}

// run sends one AdminRequest and returns the reply or the master's Error.
func (a *adminSession) run(args ...string) (wire.AdminReply, *wire.Error) {
	a.t.Helper()
	a.next++
	if err := a.s.Send(wire.MsgAdminRequest, a.next, wire.AdminRequest{Args: args}); err != nil {
		a.t.Fatal(err)
	}
	for {
		env := recvAny(a.t, a.s)
		if env.ID != a.next {
			continue
		}
		switch env.Type {
		case wire.MsgAdminReply:
			var r wire.AdminReply
			if err := wire.Decode(env, &r); err != nil {
				a.t.Fatal(err)
			}
			if !json.Valid(r.JSON) {
				a.t.Errorf("%v: invalid JSON %q", args, r.JSON)
			}
			return r, nil
		case wire.MsgError:
			var e wire.Error
			wire.Decode(env, &e)
			return wire.AdminReply{}, &e
		}
		a.t.Fatalf("%v: unexpected %v", args, env.Type)
	}
}

// must runs a command that has to succeed and returns its text.
func (a *adminSession) must(args ...string) string {
	a.t.Helper()
	r, e := a.run(args...)
	if e != nil {
		a.t.Fatalf("%v: %s: %s", args, e.Code, e.Message)
	}
	return r.Text
}

func wantAll(t *testing.T, what, text string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(text, s) {
			t.Errorf("%s: no %q in\n%s", what, s, text)
		}
	}
}

func TestAdminListings(t *testing.T) {
	c := newCluster(t)
	c.fakeSlave("s1", 2, false, "python", "c")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	id, e := submit(t, cs, 1, "hello.py", []byte("print(1)\n"))
	if e != nil {
		t.Fatalf("submit: %+v", e)
	}
	collect(t, cs, id)
	ad := c.admin(certs.RoleAdmin, "ops")

	help := ad.must("help")
	for _, cmd := range []string{"help [CMD]", "server list", "client list", "job list", "job show ID", "kick NAME",
		"drain NAME", "undrain NAME", "keys list", "keys revoke NAME", "keys retire ROLE VERSION", "quit"} {
		wantAll(t, "help", help, cmd)
	}
	wantAll(t, "help kick", ad.must("help", "kick"), "kick NAME", "Refused{kicked}")
	wantAll(t, "help keys", ad.must("help", "keys"), "keys list", "keys revoke NAME", "keys retire ROLE VERSION")
	wantAll(t, "server list -o wide", ad.must("server", "list", "-o", "wide"), "NAME", "ADDRESS", "LANGUAGES", "CPU", "LOAD", "MEMORY",
		"SLOTS", "RUNNING", "DRAINED", "REPORTED", "s1", "127.0.0.1:", "python (python 1.0)", "c (c 1.0)", "1 slave(s)")
	narrow := ad.must("server", "list")
	wantAll(t, "server list", narrow, "NAME", "LANGUAGES", "RUNNING", "CPU", "DRAINED", "HEALTH", "REPORTED", "s1", "python, c", "0/2", "1 slave(s)")
	for _, l := range strings.Split(narrow, "\n") {
		if len(l) > 80 {
			t.Errorf("server list is %d columns wide (want at most 80 without -o wide):\n%s", len(l), narrow)
		}
	}
	if strings.Contains(narrow, "ADDRESS") {
		t.Errorf("server list shows the wide columns:\n%s", narrow)
	}
	wantAll(t, "client list", ad.must("/client", "list"), "CONNECTED SINCE", "SUBMITTED", "alice", "client", "ops", "admin")
	wantAll(t, "job list", ad.must("job", "list"), "ID", "CLIENT", "LANGUAGE", "SLAVE", "STATE", "AGE", "STATUS",
		id, "alice", "python", "s1", "done", "ok")
	wantAll(t, "job show", ad.must("job", "show", id), id, "hello.py", "alice", "s1", "attempt", "finished",
		"exit code", "figures", "wall ", "limits", "time 5s, memory 256MiB, output 1MiB")
	wantAll(t, "keys list", ad.must("keys", "list"), "FINGERPRINT", "s1", "alice", "ops", "active")

	r, _ := ad.run("server", "list")
	var slaves []map[string]any
	if err := json.Unmarshal(r.JSON, &slaves); err != nil || len(slaves) != 1 || slaves[0]["name"] != "s1" {
		t.Errorf("server list JSON %s: %v", r.JSON, err)
	}
	// JSON keys are snake_case all the way down.
	for _, args := range [][]string{{"server", "list"}, {"help"}, {"job", "show", id}, {"keys", "list"}, {"client", "list"}} {
		r, _ := ad.run(args...)
		for _, k := range regexp.MustCompile(`"([A-Za-z0-9_]+)":`).FindAllStringSubmatch(string(r.JSON), -1) {
			if k[1] != strings.ToLower(k[1]) || strings.HasSuffix(k[1], "_ns") {
				t.Errorf("%v: JSON key %q is not snake_case (or is in ns):\n%s", args, k[1], r.JSON)
			}
		}
	}

	for _, bad := range []struct {
		args []string
		code string
	}{
		{[]string{"job", "show", "J999"}, wire.CodeNotFound},
		{[]string{"job", "show"}, wire.CodeBadRequest},
		{[]string{"frobnicate"}, wire.CodeBadRequest},
		{[]string{"kick", "nobody"}, wire.CodeNotFound},
		{[]string{"drain", "alice"}, wire.CodeNotFound},
		{[]string{"keys", "revoke", "nobody"}, wire.CodeNotFound},
		{[]string{"keys", "retire", "wizard", "1.0"}, wire.CodeBadRequest},
		{[]string{"help", "nothing"}, wire.CodeNotFound},
		{[]string{"quit"}, wire.CodeBadRequest},
		{[]string{"server", "list", "-o", "tall"}, wire.CodeBadRequest},
	} {
		if _, e := ad.run(bad.args...); e == nil || e.Code != bad.code {
			t.Errorf("%v: got %+v, want code %s", bad.args, e, bad.code)
		}
	}
}

func TestAdminNeedsAdminKey(t *testing.T) {
	c := newCluster(t)
	cl := c.admin(certs.RoleClient, "alice")
	for _, args := range [][]string{{"server", "list"}, {"kick", "alice"}, {"keys", "revoke", "alice"}} {
		if _, e := cl.run(args...); e == nil || e.Code != wire.CodeForbidden || !strings.Contains(e.Message, "admin key") {
			t.Errorf("client key %v: got %+v, want forbidden", args, e)
		}
	}
	c.waitLog("admin command refused", "peer=alice")
	if _, ok := c.reg.Lookup("alice"); !ok {
		t.Error("a client key revoked a key")
	}
	// A slave key is refused at the client port before any command.
	_, err := c.dial(c.issue(certs.RoleSlave, "s9", "1.0"), false, "")
	if refusedCode(err) != wire.CodeRoleMismatch {
		t.Fatalf("slave key on the client port: %v", err)
	}
}

func TestAdminKick(t *testing.T) {
	c := newCluster(t)
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	ad := c.admin(certs.RoleAdmin, "ops")
	wantAll(t, "kick", ad.must("kick", "alice"), "kicked alice")
	if r := refusal(t, cs); r.Code != wire.CodeKicked || !strings.Contains(r.Reason, "ops") {
		t.Fatalf("kicked client got %+v", r)
	}
	c.waitLog("peer kicked", "peer=alice", "by=ops", "fingerprint=")
	// The key stays valid: the client may come back.
	if _, err := c.dial(c.issue(certs.RoleClient, "bob", "1.0"), false, ""); err != nil {
		t.Fatal(err)
	}
}

func TestAdminDrain(t *testing.T) {
	c := newCluster(t)
	s1 := c.fakeSlave("s1", 2, true, "python")
	cs, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	first, e := submit(t, cs, 1, "a.py", []byte("1\n"))
	if e != nil {
		t.Fatalf("submit: %+v", e)
	}
	held := <-s1.jobs // running on s1
	ad := c.admin(certs.RoleAdmin, "ops")
	wantAll(t, "drain", ad.must("drain", "s1"), "drained s1")
	c.waitLog("slave drained", "peer=s1", "by=ops")
	wantAll(t, "server list", ad.must("server", "list"), "yes")

	s2 := c.fakeSlave("s2", 2, false, "python")
	for i := range 3 {
		// One at a time: submit skips messages that are not its answer.
		id, e := submit(t, cs, uint64(10+i), "b.py", []byte("2\n"))
		if e != nil {
			t.Fatalf("submit: %+v", e)
		}
		if v := collect(t, cs, id)[id]; v.result.Slave != "s2" {
			t.Errorf("job %s ran on %q while s1 was drained", id, v.result.Slave)
		}
	}
	// The job already running on the drained slave finishes normally.
	s1.spawn(func() { s1.finish(held) })
	if v := collect(t, cs, first)[first]; v.result.Status != wire.StatusOK || v.result.Slave != "s1" {
		t.Fatalf("held job: %+v", v.result)
	}
	s1.mu.Lock()
	ran := len(s1.ran)
	s1.mu.Unlock()
	if ran != 1 {
		t.Errorf("s1 got %d jobs, want 1", ran)
	}
	wantAll(t, "undrain", ad.must("undrain", "s1"), "undrained s1")
	c.waitLog("slave undrained", "peer=s1", "by=ops")
	// Jobs reach s1 again: with s2 drained, the next job can only run there.
	wantAll(t, "drain s2", ad.must("drain", "s2"), "drained s2")
	c.waitLog("slave drained", "peer=s2", "by=ops")
	id, e := submit(t, cs, 20, "c.py", []byte("3\n"))
	if e != nil {
		t.Fatalf("submit after undrain: %+v", e)
	}
	select {
	case a := <-s1.jobs:
		if a.JobID != id {
			t.Fatalf("s1 got job %s, want %s", a.JobID, id)
		}
		s1.spawn(func() { s1.finish(a) })
	case <-time.After(10 * time.Second):
		t.Fatal("no job reached s1 after undrain")
	}
	if v := collect(t, cs, id)[id]; v.result.Status != wire.StatusOK || v.result.Slave != "s1" {
		t.Fatalf("job after undrain: %+v", v.result)
	}
	_ = s2
}

func TestAdminKeys(t *testing.T) {
	c := newCluster(t)
	alice, err := c.dial(c.issue(certs.RoleClient, "alice", "1.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := c.dial(c.issue(certs.RoleClient, "bob", "2.0"), false, "")
	if err != nil {
		t.Fatal(err)
	}
	ad := c.admin(certs.RoleAdmin, "ops")

	wantAll(t, "revoke", ad.must("keys", "revoke", "alice"), "revoked alice")
	if r := refusal(t, alice); r.Code != wire.CodeRevokedKey {
		t.Fatalf("revoked client got %+v", r)
	}
	c.waitLog("key revoked", "by=ops", "name=alice", "fingerprint=")
	wantAll(t, "keys list", ad.must("keys", "list"), "revoked", "revoked by admin ops")

	wantAll(t, "retire", ad.must("keys", "retire", "client", "2.0"), "retired client 2.0: 1 key(s)")
	if r := refusal(t, bob); r.Code != wire.CodeVersionRetired {
		t.Fatalf("retired client got %+v", r)
	}
	c.waitLog("version retired", "by=ops", "role=client", "version=2.0")
	wantAll(t, "keys list", ad.must("keys", "list"), "Retired versions:", "retired by admin ops")
}

// refusal waits for the Refused the master sends before closing s.
func refusal(t *testing.T, s *transport.Session) wire.Refused {
	t.Helper()
	var r wire.Refused
	if err := wire.Decode(recvUntil(t, s, wire.MsgRefused), &r); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("session still open after the refusal")
	}
	return r
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDrainSurvivesReconnect: a drained slave that reconnects stays drained.
func TestDrainSurvivesReconnect(t *testing.T) {
	c := newCluster(t)
	b := c.issue(certs.RoleSlave, "s1", "1.0")
	connect := func() *transport.Session {
		s, err := c.dial(b, true, "")
		if err != nil {
			t.Fatal(err)
		}
		s.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}})
		return s
	}
	s := connect()
	c.waitLog("slave registered", "peer=s1")
	if !c.srv.Drain("s1", "ops", true) {
		t.Fatal("drain: s1 not found")
	}
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for len(c.srv.Slaves()) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	connect()
	for time.Now().Before(deadline) {
		if sl := c.srv.Slaves(); len(sl) == 1 && sl[0].Registered {
			if !sl[0].Drained {
				t.Fatal("reconnected slave is no longer drained")
			}
			c.srv.Drain("s1", "ops", false)
			if c.srv.Slaves()[0].Drained {
				t.Fatal("undrain did not stick")
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("s1 did not reconnect")
}

// TestAdminConfirmations: the commands that would lock the admin out, or
// that look like a typo, need --yes; keys unretire undoes keys retire.
func TestAdminConfirmations(t *testing.T) {
	c := newCluster(t)
	ad := c.admin(certs.RoleAdmin, "ops")
	c.issue(certs.RoleClient, "carol", "2.0")
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"keys", "revoke", "ops"}, "keys revoke: ops is your own key: revoking it ends your access at once; add --yes to do it anyway"},
		{[]string{"keys", "retire", "client", "9.9"}, "keys retire: no key in the registry is a client key of version 9.9 (a typo?); add --yes"},
		{[]string{"keys", "retire", "admin", "1.0"}, "keys retire: your own key (ops) is a admin key of version 1.0"},
		{[]string{"keys", "unretire", "client", "2.0"}, "client 2.0 is not retired"},
	} {
		if _, e := ad.run(tc.args...); e == nil || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%v: got %+v, want %q", tc.args, e, tc.msg)
		}
	}
	if _, ok := c.reg.Lookup("ops"); !ok {
		t.Fatal("the refused revoke revoked the admin's key")
	}
	wantAll(t, "retire --yes", ad.must("keys", "retire", "client", "9.9", "--yes"), "retired client 9.9: 0 key(s)")
	wantAll(t, "retire", ad.must("keys", "retire", "client", "2.0"), "retired client 2.0: 1 key(s)")
	if _, ok := c.reg.Lookup("carol"); ok {
		t.Fatal("carol still active after retire")
	}
	wantAll(t, "unretire", ad.must("keys", "unretire", "client", "2.0"), "unretired client 2.0: 1 key(s) active again")
	if _, ok := c.reg.Lookup("carol"); !ok {
		t.Fatal("carol not active after unretire")
	}
	c.waitLog("version unretired", "by=ops", "role=client", "version=2.0")
	wantAll(t, "revoke own --yes", ad.must("keys", "revoke", "ops", "--yes"), "revoked ops")
}
