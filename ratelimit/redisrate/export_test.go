package redisrate

// LanesHeld returns how many of l's batch lanes are held; l must batch
// (Options.Batch above 1). Once every call has returned, none may be.
func LanesHeld(l *Limiter) int {
	l.batch.mu.Lock()
	defer l.batch.mu.Unlock()
	return l.batch.leaders
}
