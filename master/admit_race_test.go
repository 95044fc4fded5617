package master_test

import (
	"fmt"
	"sync"
	"testing"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// TestJobsPerClientWhileWritten: a durable master writes each Submit
// before it queues the job, and lets go of its lock meanwhile. One key's
// Submits sent at once on many sessions must not all pass the key's job
// limit (Budget.Jobs.JobsPerClient) while the first ones are written: a
// key holds at most its share of jobs, however its Submits interleave.
// Nor may the Submits of many keys at once pass the queue's bound
// (Limits.MaxQueue).
func TestJobsPerClientWhileWritten(t *testing.T) {
	t.Run("one key", func(t *testing.T) { testAdmitWhileWritten(t, false) })
	t.Run("many keys", func(t *testing.T) { testAdmitWhileWritten(t, true) })
}

func testAdmitWhileWritten(t *testing.T, manyKeys bool) {
	pki := authtest.New(t)
	st := openTestStore(t, t.TempDir())
	const limit, sessions = 2, 8
	c := clusterOf(t, pki, func(cfg *master.Config) {
		cfg.Store = st
		if manyKeys {
			cfg.Limits.MaxQueue = limit
		} else {
			cfg.Budget.Jobs.JobsPerClient = limit
		}
	})
	c.fakeSlaveWith("s1", 1, true, []string{wire.FeatureInline}, "python")
	alice := c.issue(certs.RoleClient, "alice", "1.0")
	var css []*transport.Session
	for i := range sessions {
		b := alice
		if manyKeys {
			b = c.issue(certs.RoleClient, fmt.Sprint("key", i), "1.0")
		}
		cs, err := c.dialHello(b, false, wire.Hello{Features: []string{wire.FeatureInline}})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		css = append(css, cs)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for i, cs := range css {
		wg.Go(func() {
			if _, e := submitInline(t, cs, 1, inlineSubmit("a.py", []byte(fmt.Sprint("print(", i, ")\n")), nil)); e == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	switch {
	case !manyKeys && accepted > limit:
		t.Fatalf("%d jobs of one key accepted at once, its limit is %d", accepted, limit)
	case manyKeys && accepted > limit+1: // the queue's bound and the slave's slot
		t.Fatalf("%d jobs accepted at once with a queue of %d and one slot", accepted, limit)
	}
}
