package tui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"kiln/limits"
	"kiln/transport/wire"
)

// Info prints the connection state and, when connected, what the cluster
// can run right now: languages with their compiler versions, slaves and
// free slots. It returns the master's answer.
func (m *Model) Info(ctx context.Context) (wire.Info, error) {
	st := m.State()
	m.print(Note, "── Info ──")
	if st.Conn != Connected {
		m.print(Detail, "%s", strings.ToUpper(st.Conn.String()[:1])+st.Conn.String()[1:]+".")
		if st.Err != "" {
			m.print(Detail, "Last error: %s", st.Err)
		}
		return wire.Info{}, ErrNotConnected
	}
	m.print(Detail, "Connected to %s as %s (%s, version %s) since %s (%s).", st.Target.Master, st.Name, st.Role,
		st.Version, st.Since.Format("15:04:05"), m.cfg.Now().Sub(st.Since).Round(time.Second))
	c, err := m.client()
	if err != nil {
		return wire.Info{}, m.fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := c.Info(ctx)
	if err != nil {
		return info, m.fail(err)
	}
	for _, l := range InfoLines(info) {
		m.print(Detail, "%s", l)
	}
	return info, nil
}

// InfoLines describes what the cluster can run.
func InfoLines(info wire.Info) []string {
	lines := []string{fmt.Sprintf("Master %q (Kiln %s): %d slave(s), %d free slot(s), %d job(s) queued.",
		info.Master, orDash(info.Version), info.Slaves, info.FreeSlots, info.Queue)}
	if len(info.Languages) == 0 {
		return append(lines, "No slave is connected: nothing can run right now.")
	}
	for _, l := range info.Languages {
		lines = append(lines, fmt.Sprintf("  %-7s %-28s %d slave(s), %d free slot(s)",
			l.Language, strings.Join(l.Compilers, ", "), l.Slaves, l.FreeSlots))
		if l.MaxLimits.TimeMs > 0 {
			lines = append(lines, fmt.Sprintf("          limits: by default %s; at most %s",
				limits.String(l.DefaultLimits), limits.String(l.MaxLimits)))
		}
	}
	return lines
}
