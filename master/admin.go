package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"kiln/auth"
	"kiln/limits"
	"kiln/master/state"
	"kiln/transport/wire"
)

// AdminError is an admin command failure with a wire code
// (wire.CodeNotFound, wire.CodeBadRequest).
type AdminError struct {
	Code string
	Msg  string
}

func (e *AdminError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &AdminError{Code: wire.CodeBadRequest, Msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &AdminError{Code: wire.CodeNotFound, Msg: fmt.Sprintf(format, args...)}
}

// Command describes one admin command. The console (with a leading slash)
// and `kiln admin` share the same table, so their help is the same.
type Command struct {
	Name    string `json:"name"`    // the words that select it, e.g. "server list"
	Args    string `json:"args"`    // its arguments, e.g. "NAME"; empty when it takes none
	Summary string `json:"summary"` // one line for the command list
	Help    string `json:"help"`    // the longer explanation shown by help CMD
	Console bool   `json:"console"` // only meaningful in the master's console
}

// Usage is the command as typed, with its arguments.
func (c Command) Usage() string {
	if c.Args == "" {
		return c.Name
	}
	return c.Name + " " + c.Args
}

// adminCmd is a Command with its implementation.
type adminCmd struct {
	Command
	nargs, maxArgs int // arguments after the name words
	run            func(s *Server, by string, args []string) (wire.AdminReply, error)
	// confirm, when set, says why the command needs --yes for these
	// arguments (it would lock the admin out, say), or "" when it does not.
	confirm func(s *Server, by string, args []string) string
}

// adminCommands is the table of admin commands, in the order help lists them.
func adminCommands() []adminCmd {
	return []adminCmd{
		{Command{Name: "help", Args: "[CMD]", Summary: "list the commands, or explain one",
			Help: "help lists every command with one line each; help CMD (for example help kick) explains one."},
			0, 2, (*Server).adminHelp, nil},
		{Command{Name: "server list", Args: "[-o wide]", Summary: "connected slaves with their load, languages and slots",
			Help: "server list shows every connected slave: name, languages, jobs running of its slots, CPU %,\n" +
				"whether it is drained, its health and how long ago it last reported its load.\n" +
				"server list -o wide adds address, software version, OS, compiler versions, load average\n" +
				"(1, 5, 15 min) and memory used/total."},
			0, 2, (*Server).adminServers, nil},
		{Command{Name: "client list", Summary: "connected clients and admins",
			Help: "client list shows every connected client and admin: name, role, software version, address,\n" +
				"when it connected, how many jobs it submitted in this session and how many are running."},
			0, 0, (*Server).adminClients, nil},
		{Command{Name: "job list", Args: "[N]", Summary: "live jobs and the N most recent finished ones (default 20)",
			Help: "job list shows queued, assigned and running jobs, then the N most recent finished jobs\n" +
				"(default 20): id, client, language, slave, state, age and result status."},
			0, 1, (*Server).adminJobs, nil},
		{Command{Name: "job show", Args: "ID", Summary: "everything the master knows of one job",
			Help: "job show ID shows one job, live or recently finished: client, file, language, slave,\n" +
				"state, attempt, result status, exit code or signal, why it failed, the limits it ran under,\n" +
				"its figures (wall, cpu, memory) and its timings."},
			1, 1, (*Server).adminJob, nil},
		{Command{Name: "kick", Args: "NAME", Summary: "disconnect a peer now (a slave exits for good; a client may reconnect)",
			Help: "kick NAME disconnects the slave or client called NAME with a Refused{kicked} naming the admin.\n" +
				"Jobs running on a kicked slave go back to the queue. A kicked slave takes it as final and\n" +
				"exits (its systemd unit does not restart it); a client or admin may connect again. The key\n" +
				"stays valid: to keep the peer out, use keys revoke NAME."},
			1, 1, (*Server).adminKick, nil},
		{Command{Name: "drain", Args: "NAME", Summary: "send no new jobs to a slave; running ones finish",
			Help: "drain NAME stops the scheduler from placing new jobs on slave NAME; the jobs it is running\n" +
				"finish normally, and queued jobs that only it could run end with no_slave. The slave stays\n" +
				"connected. The drain is kept by name, across the slave's reconnects and (with a data\n" +
				"directory) the master's restarts, until undrain NAME."},
			1, 1, func(s *Server, by string, a []string) (wire.AdminReply, error) { return s.adminDrain(by, a, true) }, nil},
		{Command{Name: "undrain", Args: "NAME", Summary: "let a drained slave take jobs again",
			Help: "undrain NAME lets the scheduler place jobs on slave NAME again."},
			1, 1, func(s *Server, by string, a []string) (wire.AdminReply, error) { return s.adminDrain(by, a, false) }, nil},
		{Command{Name: "keys list", Summary: "every key in the registry, and retired versions",
			Help: "keys list shows every key of the registry: name, role, version, status, fingerprint\n" +
				"(first 16 hex digits), expiry, whether it is connected now, and why it was revoked;\n" +
				"then the retired (role, version) pairs."},
			0, 0, (*Server).adminKeys, nil},
		{Command{Name: "keys revoke", Args: "NAME", Summary: "revoke the active key called NAME and disconnect it",
			Help: "keys revoke NAME marks the active key called NAME revoked in the registry file; the peer\n" +
				"using it is disconnected with Refused{revoked_key} and can no longer connect. Revoking\n" +
				"your own key needs --yes: it ends your access at once."},
			1, 1, (*Server).adminRevoke, (*Server).confirmRevoke},
		{Command{Name: "keys retire", Args: "ROLE VERSION", Summary: "retire every key of a role and software version",
			Help: "keys retire ROLE VERSION (for example keys retire client 0.1.0) retires every key issued\n" +
				"for that role and version, and any issued later; connected peers using one are disconnected\n" +
				"with Refused{version_retired}. It needs --yes when no key has that role and version (a\n" +
				"typo?) or when it would retire your own key. keys unretire undoes it."},
			2, 2, (*Server).adminRetire, (*Server).confirmRetire},
		{Command{Name: "keys unretire", Args: "ROLE VERSION", Summary: "undo keys retire: its keys are active again",
			Help: "keys unretire ROLE VERSION undoes keys retire ROLE VERSION: new keys of that role and\n" +
				"version are accepted again, and the keys it retired are active again (keys revoked one by\n" +
				"one stay revoked)."},
			2, 2, (*Server).adminUnretire, nil},
		{Command{Name: "quit", Summary: "stop the master (console only)",
			Help: "quit stops the master: every peer is told it is shutting down. Only the master's own\n" +
				"console accepts it; with jobs queued or running it asks first (quit --yes does not).\n" +
				"Ctrl-C or Ctrl-D there stop it at once.", Console: true},
			0, 0, func(*Server, string, []string) (wire.AdminReply, error) {
				return wire.AdminReply{}, badRequest("quit only works in the master's console")
			}, nil},
	}
}

// Commands lists the admin commands, in the order help shows them.
func Commands() []Command {
	cmds := adminCommands()
	out := make([]Command, len(cmds))
	for i, c := range cmds {
		out[i] = c.Command
	}
	return out
}

// findCommand matches args against the table: the longest command name that
// prefixes args wins. It returns the command and the remaining arguments.
func findCommand(args []string) (adminCmd, []string, bool) {
	var best adminCmd
	bestLen := 0
	for _, c := range adminCommands() {
		words := strings.Fields(c.Name)
		if len(words) > len(args) || len(words) <= bestLen {
			continue
		}
		if slices.Equal(words, args[:len(words)]) {
			best, bestLen = c, len(words)
		}
	}
	return best, args[min(bestLen, len(args)):], bestLen > 0
}

// Admin runs one admin command for the admin called by and returns its
// reply: aligned text in Text and the same data as JSON in JSON. Errors are
// *AdminError. It is safe for concurrent use; ctx is not used yet.
func (s *Server) Admin(ctx context.Context, by string, args []string) (wire.AdminReply, error) {
	if len(args) > 0 {
		args = slices.Clone(args)
		args[0] = strings.TrimPrefix(args[0], "/")
	}
	if len(args) == 0 || args[0] == "" {
		return wire.AdminReply{}, badRequest("no command; try help")
	}
	c, rest, ok := findCommand(args)
	if !ok {
		return wire.AdminReply{}, badRequest("unknown command %q; try help", strings.Join(args, " "))
	}
	yes := false
	rest = slices.DeleteFunc(rest, func(a string) bool {
		if a == "--yes" || a == "-y" {
			yes = true
			return true
		}
		return false
	})
	if len(rest) < c.nargs || len(rest) > c.maxArgs {
		return wire.AdminReply{}, badRequest("usage: %s", c.Usage())
	}
	if c.confirm != nil && !yes {
		if why := c.confirm(s, by, rest); why != "" {
			return wire.AdminReply{}, &AdminError{Code: wire.CodeBadRequest,
				Msg: fmt.Sprintf("%s: %s; add --yes to do it anyway", c.Name, why)}
		}
	}
	s.log.Debug("admin command", "by", by, "command", c.Name, "args", rest)
	return c.run(s, by, rest)
}

// reply builds an AdminReply from its text and the value shown as JSON.
func reply(text string, v any) (wire.AdminReply, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return wire.AdminReply{}, fmt.Errorf("admin: encoding reply: %w", err)
	}
	if n := len(text) + len(js); n > maxReply {
		// What slaves announced (paths, options, escaped six bytes a
		// control character in JSON) can outgrow a frame: the admin
		// still gets an answer.
		if len(text) > maxReply {
			text = strings.ToValidUTF8(text[:maxReply], "") + "\n...(cut)\n"
		}
		text += fmt.Sprintf("(reply of %d bytes: its JSON form is left out, over the %d bytes a reply carries)\n", n, maxReply)
		js = fmt.Appendf(nil, `{"left_out_bytes":%d}`, n)
	}
	return wire.AdminReply{Text: text, JSON: js}, nil
}

// maxReply bounds an admin reply's text and JSON together, under a frame
// (wire.MaxFrame) with room for the envelope.
const maxReply = wire.MaxFrame - 64<<10

// table renders rows under a header as aligned columns.
func table(header []string, rows [][]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
	return b.String()
}

func (s *Server) adminHelp(_ string, args []string) (wire.AdminReply, error) {
	cmds := Commands()
	if len(args) == 0 {
		rows := make([][]string, len(cmds))
		for i, c := range cmds {
			rows[i] = []string{c.Usage(), c.Summary}
		}
		return reply(table([]string{"COMMAND", "DESCRIPTION"}, rows), cmds)
	}
	want := strings.TrimPrefix(strings.Join(args, " "), "/")
	var match []Command
	for _, c := range cmds {
		if c.Name == want || strings.HasPrefix(c.Name, want+" ") {
			match = append(match, c)
		}
	}
	if len(match) == 0 {
		return wire.AdminReply{}, notFound("no command %q; try help", want)
	}
	var b strings.Builder
	for i, c := range match {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s\n  %s\n", c.Usage(), strings.ReplaceAll(c.Help, "\n", "\n  "))
	}
	return reply(b.String(), match)
}

func (s *Server) adminServers(_ string, args []string) (wire.AdminReply, error) {
	wide, err := wideOutput(args)
	if err != nil {
		return wire.AdminReply{}, err
	}
	list := s.Slaves()
	rows := make([][]string, len(list))
	for i, sl := range list {
		if !wide {
			rows[i] = []string{sl.Name, languageNames(sl.Toolchains), fmt.Sprintf("%d/%d", sl.Running, sl.Slots),
				fmt.Sprintf("%.0f%%", sl.Load.CPUPercent), yesNo(sl.Drained), sl.Health, age(sl.ReportAge)}
			continue
		}
		rows[i] = []string{
			sl.Name, sl.Address, sl.Version, osOf(sl), toolchains(sl.Toolchains),
			fmt.Sprintf("%.0f%%", sl.Load.CPUPercent),
			fmt.Sprintf("%.2f %.2f %.2f", sl.Load.Load1, sl.Load.Load5, sl.Load.Load15),
			memory(sl.Load.MemUsed, sl.Load.MemTotal), strconv.Itoa(sl.Slots), strconv.Itoa(sl.Running),
			yesNo(sl.Drained), sl.Health, age(sl.ReportAge),
		}
	}
	head := []string{"NAME", "LANGUAGES", "RUNNING", "CPU", "DRAINED", "HEALTH", "REPORTED"}
	if wide {
		head = []string{"NAME", "ADDRESS", "VERSION", "OS", "LANGUAGES", "CPU", "LOAD", "MEMORY", "SLOTS", "RUNNING", "DRAINED", "HEALTH", "REPORTED"}
	}
	return reply(table(head, rows)+fmt.Sprintf("%d slave(s)\n", len(list)), list)
}

// wideOutput parses the "-o wide" (or "--wide") of a listing.
func wideOutput(args []string) (bool, error) {
	switch strings.Join(args, " ") {
	case "":
		return false, nil
	case "-o wide", "-owide", "-o=wide", "--wide", "--output wide", "--output=wide":
		return true, nil
	}
	return false, badRequest("unknown option %q: the only one is -o wide", strings.Join(args, " "))
}

// languageNames renders the languages of toolchains: "c, cpp, python".
func languageNames(ts []wire.Toolchain) string {
	if len(ts) == 0 {
		return "-"
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Language
	}
	return strings.Join(out, ", ")
}

func osOf(sl SlaveInfo) string {
	parts := []string{sl.OS}
	if sl.Arch != "" {
		parts[0] += "/" + sl.Arch
	}
	if sl.Kernel != "" {
		parts = append(parts, sl.Kernel)
	}
	return strings.Join(parts, " ")
}

// toolchains renders languages with their compilers: "c (gcc 12.2), python (3.11)".
func toolchains(ts []wire.Toolchain) string {
	if len(ts) == 0 {
		return "-"
	}
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = fmt.Sprintf("%s (%s)", t.Language, t.Compiler)
	}
	return strings.Join(out, ", ")
}

func memory(used, total uint64) string {
	if total == 0 {
		return "-"
	}
	const gib = 1 << 30
	return fmt.Sprintf("%.1f/%.1f GiB", float64(used)/gib, float64(total)/gib)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// age renders a duration for a table: "850ms", "12s", "3m10s", "2h5m".
func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

func (s *Server) adminClients(string, []string) (wire.AdminReply, error) {
	list := s.Clients()
	now := s.cfg.Now()
	rows := make([][]string, len(list))
	for i, c := range list {
		rows[i] = []string{c.Name, c.Role, c.Version, c.Address,
			c.Since.Format(time.DateTime) + " (" + age(now.Sub(c.Since)) + " ago)",
			strconv.Itoa(c.Submitted), strconv.Itoa(c.Running)}
	}
	head := []string{"NAME", "ROLE", "VERSION", "ADDRESS", "CONNECTED SINCE", "SUBMITTED", "RUNNING"}
	return reply(table(head, rows)+fmt.Sprintf("%d client(s)\n", len(list)), list)
}

func (s *Server) adminJobs(_ string, args []string) (wire.AdminReply, error) {
	keep := 20
	if len(args) == 1 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n < 0 {
			return wire.AdminReply{}, badRequest("job list: N must be a number >= 0, not %q", args[0])
		}
		keep = n
	}
	all := s.Jobs()
	var finished, live []JobInfo
	for _, j := range all {
		if j.Finished.IsZero() {
			live = append(live, j)
		} else {
			finished = append(finished, j)
		}
	}
	list := append(finished[max(len(finished)-keep, 0):], live...)
	now := s.cfg.Now()
	rows := make([][]string, len(list))
	for i, j := range list {
		rows[i] = []string{j.ID, j.Client, j.Language, dash(j.Slave), j.State, age(now.Sub(j.Created)), dash(j.Status)}
	}
	head := []string{"ID", "CLIENT", "LANGUAGE", "SLAVE", "STATE", "AGE", "STATUS"}
	text := table(head, rows) + fmt.Sprintf("%d live, %d finished shown (of %d kept), %d queued\n",
		len(live), len(list)-len(live), len(finished), s.QueueLen())
	if list == nil {
		list = []JobInfo{}
	}
	return reply(text, list)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jobDetail is what job show reports.
type jobDetail struct {
	JobInfo
	Outcome   *outcome  `json:"result,omitempty"` // once finished
	Assigned  time.Time `json:"assigned,omitzero"`
	Sealed    bool      `json:"sealed"`
	Source    int64     `json:"source_bytes"`
	Stdin     int64     `json:"stdin_bytes"`
	Limits    string    `json:"limits"`
	Connected bool      `json:"client_connected"`
}

// findJob returns the live or finished job with id.
func (s *Server) findJob(id string) (jobDetail, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		for _, h := range s.history {
			if h.id == id {
				j = h
			}
		}
	}
	if j == nil {
		return jobDetail{}, false
	}
	l := j.submit.Limits
	var out *outcome
	if !j.finished.IsZero() {
		o := j.outcome
		out = &o
	}
	return jobDetail{
		JobInfo: j.info(), Outcome: out, Assigned: j.assigned, Sealed: j.submit.Sealed,
		Source: j.submit.SourceSize, Stdin: j.submit.StdinSize, Connected: j.client != nil,
		Limits: limits.String(l),
	}, true
}

func (s *Server) adminJob(_ string, args []string) (wire.AdminReply, error) {
	d, ok := s.findJob(args[0])
	if !ok {
		return wire.AdminReply{}, notFound("no job %s (finished jobs are kept for a while only)", args[0])
	}
	now := s.cfg.Now()
	stamp := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Format(time.DateTime+".000") + " (" + age(now.Sub(t)) + " ago)"
	}
	rows := [][]string{
		{"client", fmt.Sprintf("%s (connected: %s)", d.Client, yesNo(d.Connected))},
		{"file", d.File}, {"language", d.Language}, {"slave", dash(d.Slave)},
		{"state", d.State}, {"status", dash(d.Status)}, {"attempt", strconv.Itoa(d.Attempt)},
	}
	if o := d.Outcome; o != nil {
		rows = append(rows, outcomeRows(d.Status, *o)...)
	}
	rows = append(rows, [][]string{
		{"sealed", yesNo(d.Sealed)}, {"sizes", fmt.Sprintf("source %d B, stdin %d B", d.Source, d.Stdin)},
		{"limits", d.Limits},
		{"created", stamp(d.Created)}, {"assigned", stamp(d.Assigned)}, {"finished", stamp(d.Finished)},
	}...)
	return reply(table([]string{"JOB", d.ID}, rows), d)
}

// Kick disconnects every connected peer called name with Refused{kicked}
// and a reason naming the admin. It reports how many it disconnected.
func (s *Server) Kick(name, by string) int {
	var peers []*peer
	s.mu.Lock()
	for sc := range s.slaves {
		if sc.id.Name == name {
			peers = append(peers, sc.peer)
		}
	}
	for cc := range s.clients {
		if cc.id.Name == name {
			peers = append(peers, cc.peer)
		}
	}
	s.mu.Unlock()
	for _, p := range peers {
		p.log.Warn("peer kicked", "by", by)
		s.cfg.Metrics.refused(wire.CodeKicked)
		p.refuse(wire.CodeKicked, "kicked by admin "+by)
	}
	return len(peers)
}

func (s *Server) adminKick(by string, args []string) (wire.AdminReply, error) {
	name := args[0]
	if s.Kick(name, by) == 0 {
		return wire.AdminReply{}, notFound("no connected peer called %s", name)
	}
	return reply(fmt.Sprintf("kicked %s\n", name), map[string]string{"kicked": name})
}

// Drain stops (on) or resumes (!on) placing new jobs on the connected slave
// called name; jobs it is running finish. It reports whether the slave is
// connected.
func (s *Server) Drain(name, by string, on bool) bool {
	var found *slaveConn
	s.mu.Lock()
	for sc := range s.slaves {
		if sc.id.Name == name {
			found = sc
		}
	}
	switch r := s.slaveRecs[name]; {
	case on && found != nil:
		s.recordLocked(name).drained = true // kept if the slave reconnects
		s.waitLogged(s.proposeLocked(&state.Command{Kind: state.KindDrain, Slave: name}), "drain", "")
	case !on && r != nil:
		r.drained = false
		s.waitLogged(s.proposeLocked(&state.Command{Kind: state.KindUndrain, Slave: name}), "undrain", "")
	}
	s.reindexNamedLocked(name)
	s.mu.Unlock()
	if found == nil {
		return false
	}
	if on {
		found.log.Info("slave drained", "by", by)
	} else {
		found.log.Info("slave undrained", "by", by)
		s.wake()
	}
	return true
}

func (s *Server) adminDrain(by string, args []string, on bool) (wire.AdminReply, error) {
	name := args[0]
	if !s.Drain(name, by, on) {
		return wire.AdminReply{}, notFound("no connected slave called %s", name)
	}
	verb := "drained"
	if !on {
		verb = "undrained"
	}
	return reply(fmt.Sprintf("%s %s\n", verb, name), map[string]any{"slave": name, "drained": on})
}

// Revocation and retirement change the registry file; the registry watcher
// (Run) then disconnects the peers they cover, within RegistryPoll.

// keyView is a registry entry as keys list shows it.
type keyView struct {
	auth.Entry
	Connected bool `json:"connected"`
}

func (s *Server) adminKeys(string, []string) (wire.AdminReply, error) {
	online := map[string]bool{}
	s.mu.Lock()
	for sc := range s.slaves {
		online[sc.id.Fingerprint] = true
	}
	for cc := range s.clients {
		online[cc.id.Fingerprint] = true
	}
	s.mu.Unlock()
	entries := s.cfg.Registry.Entries()
	keys := make([]keyView, len(entries))
	rows := make([][]string, len(entries))
	for i, e := range entries {
		keys[i] = keyView{e, online[e.Fingerprint]}
		rows[i] = []string{e.Name, e.Role, e.Version, string(e.Status), short(e.Fingerprint),
			e.Expires.Format(time.DateOnly), yesNo(online[e.Fingerprint]), dash(e.Reason)}
	}
	text := table([]string{"NAME", "ROLE", "VERSION", "STATUS", "FINGERPRINT", "EXPIRES", "CONNECTED", "REASON"}, rows)
	retired := s.cfg.Registry.Retired()
	if len(retired) > 0 {
		rrows := make([][]string, len(retired))
		for i, r := range retired {
			rrows[i] = []string{r.Role, r.Version, r.RetiredAt.Format(time.DateTime), dash(r.Reason)}
		}
		text += "\nRetired versions:\n" + table([]string{"ROLE", "VERSION", "RETIRED", "REASON"}, rrows)
	}
	return reply(text, map[string]any{"keys": keys, "retired": retired})
}

func (s *Server) adminRevoke(by string, args []string) (wire.AdminReply, error) {
	name := args[0]
	changed, err := s.cfg.Registry.RevokeName(name, "revoked by admin "+by)
	if errors.Is(err, auth.ErrNoMatch) {
		return wire.AdminReply{}, notFound("no active key called %s", name)
	}
	if err != nil {
		return wire.AdminReply{}, err
	}
	for _, e := range changed {
		s.log.Warn("key revoked", "by", by, "name", e.Name, "role", e.Role, "fingerprint", short(e.Fingerprint))
	}
	return reply(fmt.Sprintf("revoked %s (%s)\n", name, short(changed[0].Fingerprint)), changed)
}

// confirmRevoke asks for --yes before an admin revokes their own key.
func (s *Server) confirmRevoke(by string, args []string) string {
	if args[0] == by {
		return fmt.Sprintf("%s is your own key: revoking it ends your access at once", by)
	}
	return ""
}

// confirmRetire asks for --yes before retiring a (role, version) no key
// has, or the admin's own.
func (s *Server) confirmRetire(by string, args []string) string {
	role, version := args[0], args[1]
	if e, ok := s.cfg.Registry.Lookup(by); ok && e.Role == role && e.Version == version {
		return fmt.Sprintf("your own key (%s) is a %s key of version %s: retiring it ends your access at once", by, role, version)
	}
	for _, e := range s.cfg.Registry.Entries() {
		if e.Role == role && e.Version == version {
			return ""
		}
	}
	return fmt.Sprintf("no key in the registry is a %s key of version %s (a typo?)", role, version)
}

func (s *Server) adminUnretire(by string, args []string) (wire.AdminReply, error) {
	role, version := args[0], args[1]
	changed, err := s.cfg.Registry.Unretire(role, version)
	if errors.Is(err, auth.ErrNoMatch) {
		return wire.AdminReply{}, notFound("%s %s is not retired", role, version)
	}
	if err != nil {
		return wire.AdminReply{}, err
	}
	s.log.Warn("version unretired", "by", by, "role", role, "version", version, "keys", len(changed))
	if changed == nil {
		changed = []auth.Entry{}
	}
	return reply(fmt.Sprintf("unretired %s %s: %d key(s) active again\n", role, version, len(changed)), changed)
}

func (s *Server) adminRetire(by string, args []string) (wire.AdminReply, error) {
	role, version := args[0], args[1]
	changed, err := s.cfg.Registry.Retire(role, version, "retired by admin "+by)
	if err != nil {
		return wire.AdminReply{}, badRequest("%v", err)
	}
	s.log.Warn("version retired", "by", by, "role", role, "version", version, "keys", len(changed))
	for _, e := range changed {
		s.log.Warn("key retired", "by", by, "name", e.Name, "role", e.Role, "fingerprint", short(e.Fingerprint))
	}
	if changed == nil {
		changed = []auth.Entry{}
	}
	return reply(fmt.Sprintf("retired %s %s: %d key(s)\n", role, version, len(changed)), changed)
}

// outcomeRows are job show's lines for a finished job: how the program
// ended, why it failed, and its figures when it ran.
func outcomeRows(status string, o outcome) [][]string {
	var rows [][]string
	switch {
	case o.Signal > 0:
		rows = append(rows, []string{"ended", fmt.Sprintf("killed by signal %d", o.Signal)})
	case status == wire.StatusOK || status == wire.StatusRuntimeError:
		rows = append(rows, []string{"exit code", strconv.Itoa(o.ExitCode)})
	}
	if o.Detail != "" && o.Detail != fmt.Sprintf("exit code %d", o.ExitCode) {
		rows = append(rows, []string{"reason", o.Detail})
	}
	ran := slices.Contains([]string{wire.StatusOK, wire.StatusRuntimeError, wire.StatusTimeLimit, wire.StatusMemoryLimit, wire.StatusOutputLimit}, status)
	if ran || o.WallMs > 0 {
		rows = append(rows, []string{"figures", fmt.Sprintf("wall %d ms, cpu %d ms, memory %s", o.WallMs, o.CPUMs, limits.FormatSize(o.MemoryKiB<<10))})
	}
	if o.Compiler != "" {
		c := o.Compiler
		if o.Cached {
			c += " (cached build)"
		}
		rows = append(rows, []string{"compiler", c})
	}
	return rows
}
