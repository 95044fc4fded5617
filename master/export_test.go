package master

// Dispatches is how many times the dispatcher ran (tests only).
func (s *Server) Dispatches() int64 { return s.dispatches.Load() }

// DurableOutputHeld is the output routes keep for durable records, all
// keys (tests only).
func (s *Server) DurableOutputHeld() int64 { return s.outHeld.total() }
