package cache

import "sync/atomic"

// Stats is a snapshot of a cache's counters since [New]. Each counter is
// exact; the snapshot as a whole is not atomic.
type Stats struct {
	// Hits counts lookups answered from the cache, cached errors included.
	Hits uint64
	// Misses counts lookups that found no fresh entry.
	Misses uint64
	// Loads counts loader and bulk loader calls, background refreshes included.
	Loads uint64
	// LoadErrors counts loads that returned an error or panicked.
	LoadErrors uint64
	// Coalesced counts GetOrLoad callers that joined a load already in flight
	// instead of starting one.
	Coalesced uint64
	// StaleServed counts values returned past RefreshAfter (while a refresh
	// runs) or past their TTL because a reload failed (StaleIfError).
	StaleServed uint64
	// Refreshes counts background reloads started by RefreshAfter.
	Refreshes uint64
	// RefreshesSkipped counts refreshes not started because MaxRefreshes
	// were running.
	RefreshesSkipped uint64
	// Evictions counts entries removed to make room.
	Evictions uint64
	// Expirations counts entries removed because they had expired.
	Expirations uint64
}

// HitRatio returns Hits / (Hits + Misses), or 0 before any lookup.
func (s Stats) HitRatio() float64 {
	total := s.Hits + s.Misses
	if total == 0 {
		return 0
	}
	return float64(s.Hits) / float64(total)
}

// counters holds the cold-path counters; hits and misses live in stripes.
type counters struct {
	loads, loadErrors, coalesced, staleServed atomic.Uint64
	refreshes, refreshesSkipped               atomic.Uint64
	evictions, expirations                    atomic.Uint64
}

func (c *counters) count(r EvictReason) {
	if r == ReasonExpired {
		c.expirations.Add(1)
	} else {
		c.evictions.Add(1)
	}
}

// Stats returns the counters. It sums the striped hit and miss counters,
// so it costs O(GOMAXPROCS) and takes no lock.
func (c *Cache[K, V]) Stats() Stats {
	var st Stats
	for i := range c.stripes {
		st.Hits += c.stripes[i].hits.Load()
		st.Misses += c.stripes[i].misses.Load()
	}
	st.Loads = c.counters.loads.Load()
	st.LoadErrors = c.counters.loadErrors.Load()
	st.Coalesced = c.counters.coalesced.Load()
	st.StaleServed = c.counters.staleServed.Load()
	st.Refreshes = c.counters.refreshes.Load()
	st.RefreshesSkipped = c.counters.refreshesSkipped.Load()
	st.Evictions = c.counters.evictions.Load()
	st.Expirations = c.counters.expirations.Load()
	return st
}
