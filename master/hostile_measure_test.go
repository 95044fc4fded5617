package master_test

// The figures of issue 10 for the peer side: for each attack, the peak RSS
// of a master running in its own process and the p99 latency of an honest
// client's Info round trips, without the attack and during it, in one run.
// Run with
//
//	KILN_MEASURE=1 go test -run TestMeasurePeerAttacks -v ./master
//
// (KILN_MEASURE_SECONDS sets each phase's length, default 3). The master,
// the honest client and the attackers run in three processes. Skipped
// otherwise: it takes about a minute.

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kiln/auth"
	"kiln/auth/authtest"
	"kiln/certs"
	"kiln/master"
	"kiln/transport"
	"kiln/transport/wire"
)

// TestMeasureChild is the master process of TestMeasurePeerAttacks: it
// serves with the default budget until its stdin closes.
func TestMeasureChild(t *testing.T) {
	dir := os.Getenv("KILN_MEASURE_CHILD")
	if dir == "" {
		t.Skip("the master process of TestMeasurePeerAttacks")
	}
	b, err := certs.ReadBundle(filepath.Join(dir, "master.bundle"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := auth.OpenRegistry(filepath.Join(dir, "registry.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := master.New(master.Config{ClientAddr: "127.0.0.1:0", SlaveAddr: "127.0.0.1:0", Version: "1.0",
		Bundle: b, Registry: reg, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("ADDRS %s %s\n", srv.ClientAddr(), srv.SlaveAddr())
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		cancel()
	}()
	signal.Ignore(os.Interrupt)
	if path := os.Getenv("KILN_MEASURE_CPU"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if path := os.Getenv("KILN_MEASURE_HEAP"); path != "" {
		go func() { // a heap profile every second, for finding what an attack pins
			for i := 0; ctx.Err() == nil; i++ {
				time.Sleep(time.Second)
				if f, err := os.Create(fmt.Sprintf("%s.%d", path, i)); err == nil {
					pprof.WriteHeapProfile(f)
					f.Close()
				}
			}
		}()
	}
	srv.Run(ctx)
}

// TestMeasureHonest is the honest client of TestMeasurePeerAttacks, in a
// process of its own so that the attackers' CPU in the parent does not
// count against it: Info round trips for two phases, each p99 printed.
func TestMeasureHonest(t *testing.T) {
	spec := os.Getenv("KILN_MEASURE_HONEST") // bundle path, address, phase length
	if spec == "" {
		t.Skip("the honest client of TestMeasurePeerAttacks")
	}
	f := strings.Fields(spec)
	b, err := certs.ReadBundle(f[0])
	if err != nil {
		t.Fatal(err)
	}
	d, _ := time.ParseDuration(f[2])
	m := &measured{client: f[1], stop: make(chan struct{})}
	s, err := m.dial(b, false, wire.Hello{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Println("READY")
	p0, _, f0 := m.honestPhase(s, d)
	p1, _, f1 := m.honestPhase(s, d)
	fmt.Printf("P99 %d %d %d\n", p0, p1, f0+f1)
}

// measured is one master process and what the parent knows of it.
type measured struct {
	cmd           *exec.Cmd
	stdin         interface{ Close() error }
	client, slave string
	peak          atomic.Int64 // KiB, since the last reset
	logBytes      atomic.Int64 // what the master logged
	stop          chan struct{}
	wg            sync.WaitGroup
}

func startMeasured(t *testing.T, dir string) *measured {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMeasureChild$")
	cmd.Env = append(os.Environ(), "KILN_MEASURE_CHILD="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := &measured{cmd: cmd, stdin: stdin, stop: make(chan struct{})}
	var tee *os.File
	if path := os.Getenv("KILN_MEASURE_STDERR"); path != "" {
		tee, _ = os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	}
	m.wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := stderr.Read(buf)
			m.logBytes.Add(int64(n))
			if tee != nil {
				tee.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDRS ") {
		t.Fatalf("master process: %q %v", line, err)
	}
	f := strings.Fields(line)
	m.client, m.slave = f[1], f[2]
	m.wg.Go(m.sample)
	return m
}

// sample tracks the peak RSS of the master process.
func (m *measured) sample() {
	path := fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid)
	for {
		if b, err := os.ReadFile(path); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "VmRSS:") {
					kb, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
					if kb > m.peak.Load() {
						m.peak.Store(kb)
					}
				}
			}
		}
		select {
		case <-m.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (m *measured) close() {
	close(m.stop)
	m.stdin.Close()
	m.cmd.Wait()
	m.wg.Wait()
}

// dial connects b to the master process and says h.
func (m *measured) dial(b *certs.Bundle, slavePort bool, h wire.Hello) (*transport.Session, error) {
	addr := m.client
	if slavePort {
		addr = m.slave
	}
	id, _ := auth.IdentityOf(b.Cert)
	if h.Role == "" {
		h.Role, h.Name, h.Version = id.Role, id.Name, id.Version
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := transport.Dial(ctx, addr, auth.ClientConfig(b, "127.0.0.1"), transport.Config{})
	if err != nil {
		return nil, err
	}
	if _, err := transport.Hello(ctx, s, h); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// honestPhase runs Info round trips on one honest session for d and
// returns their p99 and the peak RSS of the phase.
func (m *measured) honestPhase(s *transport.Session, d time.Duration) (p99 time.Duration, peakKiB int64, failures int) {
	m.peak.Store(0)
	var lat []time.Duration
	deadline := time.Now().Add(d)
	for id := uint64(1); time.Now().Before(deadline); id++ {
		start := time.Now()
		if err := s.Send(wire.MsgInfoRequest, id, wire.InfoRequest{}); err != nil {
			failures++
			break
		}
		ok := false
		for {
			env, err := s.Recv()
			if err != nil {
				break
			}
			if env.Type == wire.MsgInfo && env.ID == id {
				ok = true
				break
			}
		}
		if !ok {
			failures++
			break
		}
		lat = append(lat, time.Since(start))
		time.Sleep(5 * time.Millisecond)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return p99, m.peak.Load(), failures
}

// peerAttack is one hostile behaviour, run until ctx ends.
type peerAttack struct {
	name string
	run  func(ctx context.Context, m *measured, keys *measureKeys) string
}

type measureKeys struct {
	honest, mallory, notAdmin *certs.Bundle
	slaves                    []*certs.Bundle
	liveSlave                 *certs.Bundle
}

func TestMeasurePeerAttacks(t *testing.T) {
	if os.Getenv("KILN_MEASURE") == "" {
		t.Skip("set KILN_MEASURE=1 to measure (about a minute)")
	}
	phase := 3 * time.Second
	if s, err := strconv.Atoi(os.Getenv("KILN_MEASURE_SECONDS")); err == nil {
		phase = time.Duration(s) * time.Second
	}
	pki := authtest.New(t)
	if err := certs.WriteBundle(filepath.Join(pki.Dir, "master.bundle"), pki.Master); err != nil {
		t.Fatal(err)
	}
	keys := &measureKeys{
		honest:    pki.Issue(certs.RoleClient, "honest", "1.0"),
		mallory:   pki.Issue(certs.RoleClient, "mallory", "1.0"),
		notAdmin:  pki.Issue(certs.RoleClient, "notadmin", "1.0"),
		liveSlave: pki.Issue(certs.RoleSlave, "live", "1.0"),
	}
	for i := range 8 {
		keys.slaves = append(keys.slaves, pki.Issue(certs.RoleSlave, "evil"+strconv.Itoa(i), "1.0"))
	}
	t.Logf("%-22s %12s %12s %10s %10s  %s", "attack", "RSS before", "RSS during", "p99 before", "p99 during", "notes")
	honestPath := filepath.Join(pki.Dir, "honest.bundle")
	if err := certs.WriteBundle(honestPath, keys.honest); err != nil {
		t.Fatal(err)
	}
	for _, a := range peerAttacks() {
		if only := os.Getenv("KILN_MEASURE_ONLY"); only != "" && !strings.Contains(a.name, only) {
			continue
		}
		m := startMeasured(t, pki.Dir)
		hc := exec.Command(os.Args[0], "-test.run=^TestMeasureHonest$")
		hc.Env = append(os.Environ(), fmt.Sprintf("KILN_MEASURE_HONEST=%s %s %s", honestPath, m.client, phase))
		hout, _ := hc.StdoutPipe()
		if err := hc.Start(); err != nil {
			t.Fatal(err)
		}
		hr := bufio.NewReader(hout)
		if l, err := hr.ReadString('\n'); err != nil || !strings.HasPrefix(l, "READY") {
			t.Fatalf("honest client: %q %v", l, err)
		}
		m.peak.Store(0)
		time.Sleep(phase)
		r0 := m.peak.Load()
		m.peak.Store(0)
		ctx, cancel := context.WithCancel(context.Background())
		var note string
		var wg sync.WaitGroup
		wg.Go(func() { note = a.run(ctx, m, keys) })
		time.Sleep(phase)
		r1 := m.peak.Load()
		var p0, p1 time.Duration
		var fails int
		for {
			l, err := hr.ReadString('\n')
			if err != nil {
				t.Fatalf("honest client: %v", err)
			}
			if strings.HasPrefix(l, "P99 ") {
				fmt.Sscanf(l, "P99 %d %d %d", &p0, &p1, &fails)
				break
			}
		}
		cancel()
		wg.Wait()
		hc.Wait()
		if fails > 0 {
			note += fmt.Sprintf("; honest client failed %d times", fails)
		}
		m.close()
		t.Logf("%-22s %9.1f MB %9.1f MB %10v %10v  %s", a.name, float64(r0)/1024, float64(r1)/1024,
			p0.Round(10*time.Microsecond), p1.Round(10*time.Microsecond), note)
	}
}

// repeat runs f in n goroutines until ctx ends and returns the count of
// its calls.
func repeat(ctx context.Context, n int, f func()) int64 {
	var count atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				f()
				count.Add(1)
			}
		})
	}
	wg.Wait()
	return count.Load()
}

func peerAttacks() []peerAttack {
	return []peerAttack{
		{"1 oversized Hello", func(ctx context.Context, m *measured, k *measureKeys) string {
			h := wire.Hello{Features: make([]string, 900_000)}
			id, _ := auth.IdentityOf(k.mallory.Cert)
			h.Role, h.Name, h.Version = id.Role, id.Name, id.Version
			n := repeat(ctx, 8, func() {
				if s, err := m.dial(k.mallory, false, h); err == nil {
					s.Close()
				}
			})
			return fmt.Sprintf("%d Hellos of 900 000 features, all refused", n)
		}},
		{"1 oversized Register", func(ctx context.Context, m *measured, k *measureKeys) string {
			var i atomic.Int64
			n := repeat(ctx, 8, func() {
				b := k.slaves[i.Add(1)%int64(len(k.slaves))]
				s, err := m.dial(b, true, wire.Hello{})
				if err != nil {
					return
				}
				s.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: make([]wire.Toolchain, 40_000)})
				s.Recv()
				s.Close()
			})
			return fmt.Sprintf("%d Registers of 40 000 toolchains", n)
		}},
		{"6 second slave session", func(ctx context.Context, m *measured, k *measureKeys) string {
			live, err := m.dial(k.liveSlave, true, wire.Hello{})
			if err != nil {
				return "live slave: " + err.Error()
			}
			defer live.Close()
			live.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: []wire.Toolchain{{Language: "c"}}})
			go func() {
				for {
					if _, err := live.Recv(); err != nil {
						return
					}
				}
			}()
			var refused atomic.Int64
			n := repeat(ctx, 4, func() {
				s, err := m.dial(k.liveSlave, true, wire.Hello{})
				if refusedCode(err) == wire.CodeAlreadyConnected {
					refused.Add(1)
				}
				if s != nil {
					s.Close()
				}
			})
			alive := "live slave kept its session"
			select {
			case <-live.Done():
				alive = "LIVE SLAVE LOST ITS SESSION"
			default:
			}
			return fmt.Sprintf("%d dials, %d already_connected; %s", n, refused.Load(), alive)
		}},
		{"4 slow readers", func(ctx context.Context, m *measured, k *measureKeys) string {
			var dropped atomic.Int64
			repeat(ctx, 32, func() {
				s, err := m.dial(k.mallory, false, wire.Hello{})
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					return
				}
				for id := uint64(1); ctx.Err() == nil; id++ {
					if s.Send(wire.MsgInfoRequest, id, wire.InfoRequest{}) != nil {
						dropped.Add(1)
						break
					}
				}
				s.Close()
			})
			return fmt.Sprintf("32 sessions of one key flooding Info, never reading; %d dropped as too slow", dropped.Load())
		}},
		{"9 log flood", func(ctx context.Context, m *measured, k *measureKeys) string {
			before := m.logBytes.Load()
			start := time.Now()
			args := make([]string, wire.MaxArgs)
			for i := range args {
				args[i] = strings.Repeat("y", wire.MaxText)
			}
			n := repeat(ctx, 4, func() {
				s, err := m.dial(k.notAdmin, false, wire.Hello{})
				if err != nil {
					return
				}
				for i := range 50 {
					s.Send(wire.MsgAdminRequest, uint64(i+1), wire.AdminRequest{Args: args})
				}
				s.Close()
			})
			return fmt.Sprintf("%d×50 AdminRequests of 64×4 KiB args: log grew %.1f KB/s", n,
				float64(m.logBytes.Load()-before)/1000/time.Since(start).Seconds())
		}},
		{"11 session flood", func(ctx context.Context, m *measured, k *measureKeys) string {
			var mu sync.Mutex
			var open []*transport.Session
			var busy atomic.Int64
			repeat(ctx, 8, func() {
				s, err := m.dial(k.mallory, false, wire.Hello{})
				if refusedCode(err) == wire.CodeBusy {
					busy.Add(1)
					time.Sleep(10 * time.Millisecond)
					return
				}
				if err == nil {
					mu.Lock()
					open = append(open, s)
					mu.Unlock()
				}
			})
			for _, s := range open {
				s.Close()
			}
			return fmt.Sprintf("one key: %d sessions held, %d refused busy", len(open), busy.Load())
		}},
		{"11 handshake flood", func(ctx context.Context, m *measured, k *measureKeys) string {
			var held []net.Conn
			var closedAtOnce int
			for ctx.Err() == nil && len(held) < 2000 {
				c, err := net.Dial("tcp", m.client)
				if err != nil {
					break
				}
				held = append(held, c)
			}
			for _, c := range held[len(held)-10:] {
				c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); err != nil && !strings.Contains(err.Error(), "timeout") {
					closedAtOnce++
				}
			}
			<-ctx.Done()
			for _, c := range held {
				c.Close()
			}
			return fmt.Sprintf("%d idle TCP connections; of the last 10, %d closed at once", len(held), closedAtOnce)
		}},
		{"pin: one key, all", func(ctx context.Context, m *measured, k *measureKeys) string {
			// A slave with long compiler names makes every Info ~16 KiB,
			// so the key's queues fill at its message rate.
			wordy, err := m.dial(k.liveSlave, true, wire.Hello{})
			if err != nil {
				return "wordy slave: " + err.Error()
			}
			defer wordy.Close()
			var tcs []wire.Toolchain
			for i := range wire.MaxToolchains {
				tcs = append(tcs, wire.Toolchain{Language: wire.LangPython, Compiler: fmt.Sprintf("%03d%s", i, strings.Repeat("c", 240))})
			}
			wordy.Send(wire.MsgRegister, 0, wire.Register{Slots: 1, Toolchains: tcs})
			go func() {
				for {
					if _, err := wordy.Recv(); err != nil {
						return
					}
				}
			}()
			h := wire.Hello{Features: make([]string, wire.MaxFeatures)}
			for i := range h.Features {
				h.Features[i] = strings.Repeat("f", wire.MaxShort)
			}
			id, _ := auth.IdentityOf(k.mallory.Cert)
			h.Role, h.Name, h.Version = id.Role, id.Name, id.Version
			repeat(ctx, 32, func() {
				s, err := m.dial(k.mallory, false, h)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					return
				}
				for id := uint64(1); ctx.Err() == nil; id++ {
					if s.Send(wire.MsgInfoRequest, id, wire.InfoRequest{}) != nil {
						break
					}
				}
				s.Close()
			})
			return "32 sessions at the field limits, each flooding 16 KiB Infos unread (peer side only; uploads: see the job side)"
		}},
	}
}
