package redisrate

// LanesHeld returns how many of l's batch lanes are held. Once every call
// has returned, none may be.
func LanesHeld(l *Limiter) int {
	l.batch.mu.Lock()
	defer l.batch.mu.Unlock()
	return l.batch.leaders
}
