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
// The lists merge what every slave announced, so they are deduplicated
// through sets and cut to what a client decodes (wire.MaxLanguages
// languages, built-in ones first; wire.MaxCompilers compilers,
// wire.MaxOptions extensions and wire.MaxItems options per language) and
// to half a frame of strings in all (infoStringBytes): a slave announcing
// every toolchain and option the field limits allow neither makes Info
// cost more than one pass over them nor makes it undecodable.
func (s *Server) Info() wire.Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	info := wire.Info{Master: s.cfg.Name, Version: s.cfg.Version, Queue: s.queue.len()}
	// merged is one language: each list in the order of first
	// appearance, with a set to deduplicate it.
	type merged struct {
		li                    *wire.LanguageInfo
		compilers, exts, opts []string
		seen                  map[string]bool // "c"+compiler, "e"+extension, "o"+option
	}
	byLang := map[string]*merged{}
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
		counted := map[string]bool{}
		for _, t := range sc.reg.Toolchains {
			m := byLang[t.Language]
			if m == nil {
				b := s.cfg.JobLimits.For(t.Language)
				m = &merged{li: &wire.LanguageInfo{Language: t.Language, DefaultLimits: b.Default, MaxLimits: b.Max},
					seen: map[string]bool{}}
				byLang[t.Language] = m
			}
			if !counted[t.Language] {
				// A slave with several toolchains of one language is
				// one slave of it.
				counted[t.Language] = true
				m.li.Slaves++
				m.li.FreeSlots += free
			}
			add := func(list *[]string, kind, v string) {
				if !m.seen[kind+v] {
					m.seen[kind+v] = true
					*list = append(*list, v)
				}
			}
			add(&m.compilers, "c", t.Compiler)
			for _, e := range t.Extensions {
				add(&m.exts, "e", e)
			}
			for _, o := range t.Options {
				add(&m.opts, "o", o)
			}
		}
	}
	room := infoStringBytes
	// take returns the first entries of list that fit in max entries and
	// what is left of room.
	take := func(list []string, max int) []string {
		var out []string
		for _, v := range list {
			if len(out) == max || len(v)+3 > room {
				break
			}
			room -= len(v) + 3
			out = append(out, v)
		}
		return out
	}
	for _, lang := range languageOrder(byLang) {
		if len(info.Languages) == wire.MaxLanguages || len(lang)+3 > room {
			break
		}
		room -= len(lang) + 3
		m := byLang[lang]
		slices.Sort(m.compilers)
		m.li.Compilers = take(m.compilers, wire.MaxCompilers)
		m.li.Extensions = take(m.exts, wire.MaxOptions)
		m.li.Options = take(m.opts, wire.MaxItems)
		info.Languages = append(info.Languages, *m.li)
	}
	return info
}

// infoStringBytes bounds the strings of one Info (names of languages,
// compilers, extensions, options), well under a frame (wire.MaxFrame).
const infoStringBytes = wire.MaxFrame / 2
