package sandbox

import "time"

// StepClock tells a trace function how long each step of a run or a job
// took (StrictConfig.Trace, the slave's Executor trace): each Mark
// reports the time since the previous one. With no Trace (or a nil
// clock) it does nothing and reads no clock.
type StepClock struct {
	Trace func(step string, d time.Duration)
	last  time.Time
}

// Start sets the clock that the first Mark measures from.
func (s *StepClock) Start() {
	if s != nil && s.Trace != nil {
		s.last = time.Now()
	}
}

// Mark reports the time since the last mark as step's.
func (s *StepClock) Mark(step string) {
	if s == nil || s.Trace == nil {
		return
	}
	now := time.Now()
	s.Trace(step, now.Sub(s.last))
	s.last = now
}
