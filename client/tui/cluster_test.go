package tui

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"kiln/auth"
	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/client"
	"kiln/internal/testenv"
	"kiln/master"
	"kiln/slave"
	"kiln/slave/sandbox"
	"kiln/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// cluster is a real master and a real slave (plain runner) on loopback,
// with a fresh CA, registry and client bundle on disk.
type cluster struct {
	t          *testing.T
	dir        string
	pki        *authtest.PKI
	reg        *auth.Registry
	mb         *certs.Bundle
	clientAddr string
	slaveAddr  string
	bundle     string // path of the client bundle

	mu         sync.Mutex
	stopMaster func()
	stopSlave  func()
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	pki := authtest.New(t)
	c := &cluster{t: t, pki: pki, dir: pki.Dir, reg: pki.Registry, mb: pki.Master}
	c.bundle = c.writeBundle(certs.RoleClient, "alice", "1.0")
	c.startMaster("127.0.0.1:0", "127.0.0.1:0")
	c.startSlave()
	t.Cleanup(c.stop)
	return c
}

// writeBundle issues a registered bundle and writes it into the cluster dir.
func (c *cluster) writeBundle(role, name, version string) string {
	c.t.Helper()
	b := c.issue(role, name, version)
	path := filepath.Join(c.dir, name+".bundle")
	if err := certs.WriteBundle(path, b); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func (c *cluster) issue(role, name, version string) *certs.Bundle {
	c.t.Helper()
	return c.pki.Issue(role, name, version)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startMaster runs a master on the given addresses (":0" ports pick free ones).
func (c *cluster) startMaster(clientAddr, slaveAddr string) {
	c.t.Helper()
	srv, err := master.New(master.Config{
		ClientAddr: clientAddr, SlaveAddr: slaveAddr, Version: "1.0",
		Bundle: c.mb, Registry: c.reg, Logger: quiet(),
		HeartbeatInterval: 200 * time.Millisecond, RegistryPoll: 50 * time.Millisecond,
		Transport: transport.Config{KeepAliveInterval: 250 * time.Millisecond},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	var lerr error
	for range 50 { // the old listener's port may take a moment to free
		if lerr = srv.Listen(); lerr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lerr != nil {
		c.t.Fatal(lerr)
	}
	c.clientAddr, c.slaveAddr = srv.ClientAddr(), srv.SlaveAddr()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Run(ctx)
	}()
	c.mu.Lock()
	c.stopMaster = func() { cancel(); <-done }
	c.mu.Unlock()
}

// startSlave runs a real slave with the machine's toolchains and no sandbox.
func (c *cluster) startSlave() {
	c.t.Helper()
	exec, err := slave.NewExecutor(slave.ExecConfig{
		Name: "s1", WorkRoot: filepath.Join(c.dir, "work"), Runner: &sandbox.Plain{},
		Toolchains: slave.Detect(context.Background()), Logger: quiet(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	s, err := slave.New(slave.Config{
		Bundle: c.issue(certs.RoleSlave, "s1", "1.0"), Master: c.slaveAddr, Slots: 2,
		Executor: exec, Logger: quiet(), LoadInterval: 200 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		Transport: transport.Config{KeepAliveInterval: 250 * time.Millisecond},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	c.mu.Lock()
	c.stopSlave = func() { cancel(); <-done }
	c.mu.Unlock()
	c.waitSlave()
}

// waitSlave waits until the master lists a slave with a free slot.
func (c *cluster) waitSlave() {
	c.t.Helper()
	b, err := certs.ReadBundle(c.bundle)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{Bundle: b, Master: c.clientAddr})
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	for ctx.Err() == nil {
		if info, err := cl.Info(ctx); err == nil && info.Slaves > 0 && info.FreeSlots > 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no slave registered within 15 s")
}

func (c *cluster) restartMaster() {
	c.t.Helper()
	c.mu.Lock()
	stop := c.stopMaster
	c.mu.Unlock()
	stop()
	c.startMaster(c.clientAddr, c.slaveAddr)
	c.waitSlave() // the slave reconnects by itself
}

func (c *cluster) stop() {
	c.mu.Lock()
	stopS, stopM := c.stopSlave, c.stopMaster
	c.mu.Unlock()
	stopS()
	stopM()
}

// revoke revokes the key of a registry entry by name.
func (c *cluster) revoke(name string) {
	c.t.Helper()
	if _, err := c.reg.RevokeName(name, "test"); err != nil {
		c.t.Fatal(err)
	}
}

// hasLang reports whether this machine can run lang.
func hasLang(lang string) bool {
	for _, tc := range slave.Detect(context.Background()) {
		if tc.Language == lang {
			return true
		}
	}
	return false
}

func needLang(t *testing.T, lang string) {
	t.Helper()
	if !hasLang(lang) {
		testenv.Need(t, "a "+lang+" toolchain", errors.New("slave.Detect found none on this machine"))
	}
}

// writeSource writes a source file into a fresh directory.
func writeSource(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
