package slave

import (
	"context"
	"sync"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/load"
	"github.com/shirou/gopsutil/v3/mem"

	"kiln/transport/wire"
)

// LoadSampler measures this machine's load for [wire.Load] reports. CPU
// percent is the busy share of all CPUs since the previous Sample (since
// boot on the first). It is safe for concurrent use.
type LoadSampler struct {
	mu   sync.Mutex
	prev *cpu.TimesStat
}

// NewLoadSampler returns a sampler; it reads nothing until Sample.
func NewLoadSampler() *LoadSampler { return &LoadSampler{} }

// Sample reads CPU, load averages and memory; running and slots are the
// slave's own job counts. Values it cannot read are zero.
func (s *LoadSampler) Sample(ctx context.Context, running, slots int) wire.Load {
	l := wire.Load{Running: running, Slots: slots, CPUPercent: s.cpuPercent(ctx)}
	if a, err := load.AvgWithContext(ctx); err == nil {
		l.Load1, l.Load5, l.Load15 = a.Load1, a.Load5, a.Load15
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		l.MemUsed, l.MemTotal = vm.Used, vm.Total
	}
	return l
}

func (s *LoadSampler) cpuPercent(ctx context.Context) float64 {
	ts, err := cpu.TimesWithContext(ctx, false)
	if err != nil || len(ts) == 0 {
		return 0
	}
	now := ts[0]
	s.mu.Lock()
	prev := s.prev
	s.prev = &now
	s.mu.Unlock()
	busy, total := busyTotal(now)
	if prev != nil {
		pb, pt := busyTotal(*prev)
		busy, total = busy-pb, total-pt
	}
	if total <= 0 {
		return 0
	}
	return min(max(100*busy/total, 0), 100)
}

// busyTotal returns the busy and total CPU seconds of t (guest time is
// already counted in user).
func busyTotal(t cpu.TimesStat) (busy, total float64) {
	total = t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
	return total - t.Idle - t.Iowait, total
}
