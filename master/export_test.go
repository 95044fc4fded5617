package master

// Dispatches is how many times the dispatcher ran (tests only).
func (s *Server) Dispatches() int64 { return s.dispatches.Load() }
