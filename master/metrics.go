package master

import "time"

// Metrics records what operators watch. A nil *Metrics records nothing.
type Metrics struct{}

func (m *Metrics) refused(code string)                             {}
func (m *Metrics) peers(role string, delta int)                    {}
func (m *Metrics) dispatched(wait time.Duration)                   {}
func (m *Metrics) finished(lang, status string, e2e time.Duration) {}
func (m *Metrics) bytes(kind string, n int)                        {}
