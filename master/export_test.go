package master

// Dispatches is how many times the dispatcher ran (tests only).
func (s *Server) Dispatches() int64 { return s.dispatches.Load() }

// DurableOutputHeld is the output routes keep for durable records, all
// keys (tests only).
func (s *Server) DurableOutputHeld() int64 { return s.outHeld.total() }

// VerifyScheduler makes every dispatch check the scheduler's index against
// the slaves and the scan it replaces, panicking on a difference (tests
// only; call before Run).
func (s *Server) VerifyScheduler() { s.checkIndex = true }
