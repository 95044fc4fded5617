package master

import (
	"slices"
	"strings"
	"time"

	"kiln/transport/wire"
)

// SlaveInfo is a connected slave as listings show it.
type SlaveInfo struct {
	Name       string           `json:"name"`
	Address    string           `json:"address"`
	Version    string           `json:"version"`
	OS         string           `json:"os"`
	Kernel     string           `json:"kernel"`
	Arch       string           `json:"arch"`
	CPUs       int              `json:"cpus"`
	Toolchains []wire.Toolchain `json:"toolchains"`
	Sandbox    string           `json:"sandbox"`
	Load       wire.Load        `json:"load"`
	Slots      int              `json:"slots"`
	Running    int              `json:"running"`
	Finished   int              `json:"finished"`
	Drained    bool             `json:"drained"`
	// Health is "ok", "unhealthy: REASON" (the slave's own report),
	// "quarantined 25s (REASON)" or "N strike(s) (REASON)".
	Health      string        `json:"health"`
	Quarantined bool          `json:"quarantined"`
	Since       time.Time     `json:"since"`
	ReportAge   time.Duration `json:"-"`
	ReportAgeMs int64         `json:"report_age_ms"`
	Registered  bool          `json:"registered"`
}

// ClientInfo is a connected client or admin as listings show it.
type ClientInfo struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Version   string    `json:"version"`
	Address   string    `json:"address"`
	Since     time.Time `json:"since"`
	Submitted int       `json:"submitted"`
	Running   int       `json:"running"`
}

// Slaves lists the connected slaves, by name.
func (s *Server) Slaves() []SlaveInfo {
	now := s.cfg.Now()
	s.mu.Lock()
	out := make([]SlaveInfo, 0, len(s.slaves))
	for sc := range s.slaves {
		rec := s.slaveRecs[sc.id.Name]
		if rec == nil {
			rec = &slaveRecord{}
		}
		health := rec.status(now)
		if sc.load.Health != "" {
			health = "unhealthy: " + sc.load.Health
		}
		out = append(out, SlaveInfo{
			Name: sc.id.Name, Address: sc.addr, Version: sc.hello.Version,
			OS: sc.reg.OS, Kernel: sc.reg.Kernel, Arch: sc.reg.Arch, CPUs: sc.reg.CPUs,
			Toolchains: sc.reg.Toolchains, Sandbox: sc.reg.Sandbox, Load: sc.load,
			Slots: sc.reg.Slots, Running: len(sc.running), Finished: sc.finished, Drained: rec.drained,
			Health: health, Quarantined: rec.quarantined(now),
			Since: sc.since, ReportAge: now.Sub(sc.loadAt), ReportAgeMs: now.Sub(sc.loadAt).Milliseconds(), Registered: sc.registered,
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b SlaveInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Clients lists the connected clients and admins, by name.
func (s *Server) Clients() []ClientInfo {
	s.mu.Lock()
	out := make([]ClientInfo, 0, len(s.clients))
	for cc := range s.clients {
		running := 0
		for _, j := range cc.jobs {
			if j.state != wire.StateQueued {
				running++
			}
		}
		out = append(out, ClientInfo{
			Name: cc.id.Name, Role: cc.id.Role, Version: cc.hello.Version, Address: cc.addr,
			Since: cc.since, Submitted: cc.submitted, Running: running,
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b ClientInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Jobs lists live jobs then recent finished ones, oldest first.
func (s *Server) Jobs() []JobInfo {
	s.mu.Lock()
	out := make([]JobInfo, 0, len(s.jobs)+len(s.history))
	for _, j := range s.history {
		out = append(out, j.info())
	}
	live := make([]*job, 0, len(s.jobs))
	for _, j := range s.jobs {
		live = append(live, j)
	}
	sortJobs(live)
	for _, j := range live {
		out = append(out, j.info())
	}
	s.mu.Unlock()
	return out
}

// QueueLen is the number of jobs waiting for a slot.
func (s *Server) QueueLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.len()
}

// HeldBytes is the bytes of uploaded files the master holds in memory
// (pending uploads, queued and running jobs), counted as they arrived.
func (s *Server) HeldBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// SlavesOut counts the connected slaves that take no job now because they
// are quarantined or report themselves unhealthy.
func (s *Server) SlavesOut() (quarantined, unhealthy int) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for sc := range s.slaves {
		switch {
		case sc.load.Health != "":
			unhealthy++
		case s.slaveRecs[sc.id.Name] != nil && s.slaveRecs[sc.id.Name].quarantined(now):
			quarantined++
		}
	}
	return quarantined, unhealthy
}

// Info is what a client sees of the cluster: languages, compilers, slots.
func (s *Server) Info() wire.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	info := wire.Info{Master: s.cfg.Name, Version: s.cfg.Version, Queue: s.queue.len()}
	byLang := map[string]*wire.LanguageInfo{}
	for sc := range s.slaves {
		if !sc.registered {
			continue
		}
		info.Slaves++
		free := 0
		if sc.candidate(s.slaveRecs[sc.id.Name], now).available() {
			free = max(sc.reg.Slots-len(sc.running), 0)
		}
		info.FreeSlots += free
		for _, t := range sc.reg.Toolchains {
			li := byLang[t.Language]
			if li == nil {
				b := s.cfg.JobLimits.For(t.Language)
				li = &wire.LanguageInfo{Language: t.Language, DefaultLimits: b.Default, MaxLimits: b.Max}
				byLang[t.Language] = li
			}
			li.Slaves++
			li.FreeSlots += free
			if !slices.Contains(li.Compilers, t.Compiler) {
				li.Compilers = append(li.Compilers, t.Compiler)
			}
			addLanguageOptions(li, t)
		}
	}
	for _, lang := range languageOrder(byLang) {
		li := byLang[lang]
		slices.Sort(li.Compilers)
		info.Languages = append(info.Languages, *li)
	}
	return info
}
