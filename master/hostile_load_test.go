package master_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"kiln/certs"
	"kiln/transport/wire"
)

// TestHostileSlaveLoadNaN: a slave key holder reports its CPU use as NaN
// (msgpack carries it), then itself unhealthy, over mutual TLS, while
// honest slaves report their load every 100 ms. The scheduler orders the
// free slaves by that figure: every job of an honest client must still
// run, none on the unhealthy slave, and the master must keep answering
// (a NaN in the order once lost slaves from the index and could hang the
// dispatcher).
func TestHostileSlaveLoadNaN(t *testing.T) {
	c := newCluster(t)
	for i := range 6 {
		c.fakeSlaveWith(fmt.Sprint("honest", i), 1, false, []string{wire.FeatureInline}, "python")
	}
	evil, err := c.dial(c.issue(certs.RoleSlave, "evil", "1.0"), true, "")
	if err != nil {
		t.Fatal(err)
	}
	defer evil.Close()
	if err := evil.Send(wire.MsgRegister, 0, wire.Register{Slots: 4, OS: "linux",
		Toolchains: []wire.Toolchain{{Language: "python", Compiler: "python 1.0"}}}); err != nil {
		t.Fatal(err)
	}
	evil.Send(wire.MsgLoad, 0, wire.Load{Slots: 4, CPUPercent: math.NaN()})
	c.waitLog("slave registered", "peer=evil")
	var assigned atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			env, err := evil.Recv()
			if err != nil {
				return
			}
			if env.Type == wire.MsgAssign {
				assigned.Add(1)
			}
		}
	}()
	cs := c.inlineClient("alice")
	for i := range 4 { // jobs on evil and the others reorder the index
		evil.Send(wire.MsgLoad, 0, wire.Load{Slots: 4, CPUPercent: math.NaN()})
		if _, e := submitInline(t, cs, uint64(i+1), inlineSubmit("a.py", []byte(fmt.Sprint("print(", i, ")\n")), nil)); e != nil {
			t.Fatal(e)
		}
	}
	evil.Send(wire.MsgLoad, 0, wire.Load{Slots: 4, CPUPercent: math.NaN(), Health: "going away"})
	c.waitLog("slave reports itself unhealthy", "peer=evil")
	before := assigned.Load()
	for i := range 24 { // one at a time: a Submit's reply is read past other messages
		id, e := submitInline(t, cs, uint64(100+i), inlineSubmit("b.py", []byte(fmt.Sprint("print(", i, ")\n")), nil))
		if e != nil {
			t.Fatalf("job %d: %+v", i, e)
		}
		if v := collect(t, cs, id)[id]; v.result.Status != wire.StatusOK {
			t.Errorf("job %s: %+v", id, v.result)
		}
	}
	if n := assigned.Load(); n != before {
		t.Errorf("the unhealthy slave got %d jobs", n-before)
	}
	// The admin's view of the slaves, JSON included (NaN is no JSON),
	// is not blinded by one slave's figures.
	evil.Send(wire.MsgLoad, 0, wire.Load{Slots: 4, CPUPercent: math.Inf(-1), Load1: math.NaN(), Load5: math.Inf(1), Load15: -1})
	c.waitLog("slave reports itself healthy again", "peer=evil")
	ad := c.admin(certs.RoleAdmin, "ops")
	for _, args := range [][]string{{"server", "list"}, {"server", "list", "-o", "wide"}} {
		r, e := ad.run(args...)
		if e != nil || !strings.Contains(r.Text, "evil") || !json.Valid(r.JSON) {
			t.Errorf("%v: %+v %+v", args, r, e)
		}
	}
	evil.Close()
	<-done
}
