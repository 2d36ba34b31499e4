package cache

import (
	"sync"
	"sync/atomic"
)

// entry is one key's slot. Its fields other than ref and refreshing change
// only under the shard's write lock; readers copy them under the read lock.
type entry[K comparable, V any] struct {
	key       K
	value     V
	err       error // non-nil: a cached loader error (NegativeTTL)
	expires   int64 // unix ns from which the entry is no longer fresh; 0 = never
	keepUntil int64 // unix ns from which it may be dropped (expires + StaleIfError); 0 = never
	refreshAt int64 // unix ns from which GetOrLoad reloads it in the background; 0 = never
	idx       int   // position in shard.ring

	// ref is the CLOCK reference bit. Readers set it with an atomic store
	// under the read lock, and only when it is clear, so a hit on a hot
	// entry writes nothing and its cache line stays shared between cores.
	ref        atomic.Uint32
	refreshing atomic.Bool
}

// shard is one lock's worth of the cache: a map for lookup and a ring of
// the same entries for CLOCK eviction. hits and misses sit on the lock's
// cache line, which a reader has to own anyway, so counting costs no
// additional line transfer between cores.
type shard[K comparable, V any] struct {
	mu       sync.RWMutex
	hits     atomic.Uint64
	misses   atomic.Uint64
	m        map[K]*entry[K, V]
	ring     []*entry[K, V]
	hand     int
	capacity int
	calls    map[K]*call[V] // loads in flight, at most one per key
	_        [32]byte       // keep neighbouring shards off this cache line
}

func (s *shard[K, V]) init(capacity int) {
	s.capacity = capacity
	s.m = make(map[K]*entry[K, V])
	s.ring = nil
	s.hand = 0
	if s.calls == nil {
		s.calls = make(map[K]*call[V])
	}
}

func (s *shard[K, V]) insert(e *entry[K, V]) {
	e.idx = len(s.ring)
	s.ring = append(s.ring, e)
	s.m[e.key] = e
}

// remove takes e out of the map and the ring; the ring's last entry fills
// the hole, so removal is O(1).
func (s *shard[K, V]) remove(e *entry[K, V]) {
	delete(s.m, e.key)
	last := len(s.ring) - 1
	moved := s.ring[last]
	s.ring[e.idx] = moved
	moved.idx = e.idx
	s.ring[last] = nil
	s.ring = s.ring[:last]
	if s.hand > len(s.ring) {
		s.hand = 0
	}
}

// victim picks the entry to evict from a full shard with the CLOCK sweep:
// an entry past its keep-until time goes first; otherwise the hand clears
// reference bits until it meets an entry not used since its last pass.
// Because the sweep holds the write lock, no bit is set behind it, and it
// ends within one turn of the ring.
func (s *shard[K, V]) victim(t int64) (*entry[K, V], EvictReason) {
	for {
		if s.hand >= len(s.ring) {
			s.hand = 0
		}
		e := s.ring[s.hand]
		s.hand++
		if e.keepUntil != 0 && t >= e.keepUntil {
			return e, ReasonExpired
		}
		if e.ref.Load() != 0 {
			e.ref.Store(0)
			continue
		}
		return e, ReasonCapacity
	}
}
