package tui

import (
	"fmt"

	"kiln/client"
	"kiln/transport/wire"
)

// SelectTests makes Execute judge the selected file on the tests of dir
// (NAME.in with NAME.out or NAME.ans, see client.LoadTests) instead of
// running it once; "" goes back to single runs. The folder is checked
// now and read again at each Execute.
func (m *Model) SelectTests(dir string) error {
	if dir == "" {
		m.update(func(s *State) { s.Tests = "" })
		m.print(Note, "No tests: F5 runs the file once.")
		return nil
	}
	dir = absPath(dir)
	cases, err := client.LoadTests(dir)
	if err != nil {
		return m.fail(err)
	}
	m.update(func(s *State) { s.Tests = dir })
	m.print(Note, "Tests: %d from %s; F5 judges the selected file on them.", len(cases), dir)
	return nil
}

// loadTests reads the selected tests folder, or returns nil when none is.
func (m *Model) loadTests() (*client.Tests, error) {
	m.mu.Lock()
	dir := m.st.Tests
	m.mu.Unlock()
	if dir == "" {
		return nil, nil
	}
	cases, err := client.LoadTests(dir)
	if err != nil {
		return nil, err
	}
	return &client.Tests{Cases: cases}, nil
}

// testLine prints one verdict as a row of the tests table.
func (m *Model) testLine(tests *client.Tests, v wire.TestVerdict) {
	name := ""
	if tests != nil && v.Index >= 0 && v.Index < len(tests.Cases) {
		name = tests.Cases[v.Index].Name
	}
	kind := Success
	if v.Status != wire.TestAccepted {
		kind = Failure
	}
	row := fmt.Sprintf("test %3d  %-12s %-14s %6d ms %9s", v.Index+1, name, v.Status, v.WallMs, kib(v.MemoryKiB))
	if v.Detail != "" {
		row += "  " + v.Detail
	}
	m.print(kind, "%s", row)
}

// printTests prints the end of a batch: passed/total and the worst figures.
func (m *Model) printTests(name string, o client.Outcome) {
	s := o.Result.Tests
	kind := Success
	if s.Status != wire.TestAccepted {
		kind = Failure
	}
	m.print(kind, "%s: passed %d/%d (%s)", name, s.Passed, s.Total, s.Status)
	m.print(Detail, "worst wall %d ms · cpu %d ms · memory %s · slave %s", s.WorstWallMs, s.WorstCPUMs, kib(s.WorstMemoryKiB), orDash(o.Result.Slave))
}
