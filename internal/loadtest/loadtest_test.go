package loadtest_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/internal/loadtest"
	"kiln/master"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRoutesEveryJob runs the real master in-process against 4 simulated
// slaves of 4 slots and 40 client sessions over 8 keys, at 60 jobs/s for
// 1.5 s: every job submitted gets its own result, none is lost or
// misrouted, and every slave takes a share; with the source inline in
// Submit and Assign, and on file streams.
func TestRoutesEveryJob(t *testing.T) {
	t.Run("inline", func(t *testing.T) { routesEveryJob(t, false) })
	t.Run("streams", func(t *testing.T) { routesEveryJob(t, true) })
}

func routesEveryJob(t *testing.T, streams bool) {
	pki := authtest.New(t)
	srv, err := master.New(master.Config{
		ClientAddr: "127.0.0.1:0", SlaveAddr: "127.0.0.1:0", Version: "1.0",
		Bundle: pki.Master, Registry: pki.Registry, Logger: slog.New(slog.DiscardHandler),
		// A loaded machine under -race can read a Submit well after its
		// source stream: this test is about routing, not that bound.
		Budget: master.Budget{Jobs: master.JobBudget{SubmitWait: 10 * time.Second}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	cfg := loadtest.Config{ClientAddr: srv.ClientAddr(), SlaveAddr: srv.SlaveAddr(), Slots: 4, Sessions: 40,
		SlaveDelay: 2 * time.Millisecond, Streams: streams}
	for i := range 4 {
		cfg.Slaves = append(cfg.Slaves, pki.Issue(certs.RoleSlave, fmt.Sprintf("sim-%d", i), "1.0"))
	}
	for i := range 8 {
		cfg.Clients = append(cfg.Clients, pki.Issue(certs.RoleClient, fmt.Sprintf("load-%d", i), "1.0"))
	}
	sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
	defer scancel()
	setup, err := loadtest.Start(sctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	waitSlaves(t, srv, 4)
	rep := setup.Run(sctx, loadtest.Step{Rate: 60, Duration: 1500 * time.Millisecond}, 10*time.Second)
	t.Logf("%+v", rep)
	if err := setup.Check(); err != nil {
		t.Fatal(err)
	}
	if rep.Submitted < 45 || rep.Routed != rep.Submitted || rep.Errors != 0 || rep.Busy != 0 {
		t.Fatalf("submitted %d, routed %d, errors %d, busy %d", rep.Submitted, rep.Routed, rep.Errors, rep.Busy)
	}
	if rep.AssignP50 <= 0 || rep.ResultP50 < rep.AssignP50 || rep.ResultP99 < rep.ResultP50 {
		t.Fatalf("latencies out of order: %+v", rep)
	}
	n, files := setup.InlineAssigns()
	if all := sum(setup.SlaveJobs()); streams && (n != 0 || files != all) || !streams && (n != all || files != 0) {
		t.Fatalf("%d of %d Assigns carried the source inline, %d file streams (streams %v)", n, all, files, streams)
	}
	for i, n := range setup.SlaveJobs() {
		if n == 0 {
			t.Errorf("slave %d got no job: %v", i, setup.SlaveJobs())
		}
	}
}

// waitSlaves waits until the master lists n slaves.
func waitSlaves(t *testing.T, srv *master.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.Slaves()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d slaves registered, want %d", len(srv.Slaves()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sum(ns []int) int {
	t := 0
	for _, n := range ns {
		t += n
	}
	return t
}
