package cache

import (
	"sync"
	"sync/atomic"
)

// entry is one key's value. Once published in a table it is immutable,
// except for the atomics: a Set of the same key publishes a new entry.
type entry[K comparable, V any] struct {
	key       K
	hash      uint64
	value     V
	err       error // non-nil: a cached loader error (NegativeTTL)
	expires   int64 // unix ns from which the entry is no longer fresh; 0 = never
	keepUntil int64 // unix ns from which it may be dropped (expires + StaleIfError); 0 = never
	idx       int   // position in shard.ring; guarded by shard.mu

	// refreshAt is when GetOrLoad reloads the entry in the background
	// (0 = never); a failed reload pushes it back.
	refreshAt atomic.Int64
	// retryAt, set when a load of the expired entry failed and its stale
	// value was served instead (StaleIfError with NegativeTTL), is until
	// when GetOrLoad keeps serving it rather than loading again.
	retryAt atomic.Int64
	// ref is the CLOCK reference bit. Readers set it only when it is clear,
	// so a hit on a hot entry writes nothing and its cache line stays
	// shared between cores.
	ref        atomic.Uint32
	refreshing atomic.Bool
}

// touch marks e as recently used for the CLOCK sweep. It writes the bit
// only when it is clear, so hits on a hot entry leave its cache line shared.
func (e *entry[K, V]) touch() {
	if e.ref.Load() == 0 {
		e.ref.Store(1)
	}
}

// dropCall marks key's load in flight, if any, so that it answers its
// waiters but stores nothing: a Set or Delete since it began is newer.
// It also forgets the load, so that a caller who misses after the write
// starts a load of its own instead of joining one that may have read the
// source before the write. Called with mu held.
func (s *shard[K, V]) dropCall(key K) {
	if len(s.calls) > 0 {
		if cl := s.calls[key]; cl != nil {
			cl.dropped = true
			delete(s.calls, key)
		}
	}
}

// table is an open-addressing hash table with linear probing, read without
// locks. Writers, holding the shard's lock, only ever turn a nil slot into
// an entry, or an entry into another entry or the shard's tombstone; slots
// never become nil again, and a table is replaced whole when it is rebuilt.
// So a reader's probe always ends at a nil slot, and a reader holding an
// old table sees a consistent, if slightly older, state.
type table[K comparable, V any] struct {
	slots []atomic.Pointer[entry[K, V]]
	mask  uint64
}

func newTable[K comparable, V any](size int) *table[K, V] {
	return &table[K, V]{slots: make([]atomic.Pointer[entry[K, V]], size), mask: uint64(size - 1)}
}

// slotBits is how far a hash is shifted to pick a slot: the low bits
// pick the shard (at most 1024 shards).
const slotBits = 10

// minSlots is the size of a new shard's table.
const minSlots = 16

// shard is one lock's worth of the cache: a lock-free table for lookups and
// a ring of the same entries for CLOCK eviction, both changed under mu.
type shard[K comparable, V any] struct {
	tab atomic.Pointer[table[K, V]]
	_   [56]byte // readers load tab; keep writers' mu off its cache line

	mu       sync.Mutex
	ring     []*entry[K, V]
	hand     int
	capacity int
	maxSlots int            // table size that holds capacity at load factor 1/2
	used     int            // non-nil slots of tab: entries and tombstones
	tomb     *entry[K, V]   // marks a deleted slot
	calls    map[K]*call[V] // loads in flight, at most one per key
}

func (s *shard[K, V]) init(capacity int) {
	s.capacity = capacity
	s.maxSlots = minSlots
	for s.maxSlots < 2*capacity {
		s.maxSlots *= 2
	}
	s.tab.Store(newTable[K, V](minSlots))
	s.ring, s.hand, s.used = nil, 0, 0
	if s.tomb == nil {
		s.tomb = new(entry[K, V])
		s.calls = make(map[K]*call[V])
	}
}

// find returns key's entry, or nil. It takes no lock. It repeats slot's
// loop rather than calling it, so that it stays small enough to be inlined
// into Get.
func (s *shard[K, V]) find(key K, h uint64) *entry[K, V] {
	t := s.tab.Load()
	for i := (h >> slotBits) & t.mask; ; i = (i + 1) & t.mask {
		e := t.slots[i].Load()
		if e == nil {
			return nil
		}
		if e.hash == h && e.key == key && e != s.tomb {
			return e
		}
	}
}

// slot returns key's entry and its slot in the current table, or a nil
// entry. Called with mu held, so the table cannot change under the caller.
func (s *shard[K, V]) slot(key K, h uint64) (uint64, *entry[K, V]) {
	t := s.tab.Load()
	for i := (h >> slotBits) & t.mask; ; i = (i + 1) & t.mask {
		e := t.slots[i].Load()
		if e == nil {
			return 0, nil
		}
		if e.hash == h && e.key == key && e != s.tomb {
			return i, e
		}
	}
}

// put publishes e, whose key is not in the table, in the first free slot
// of its probe sequence. Called with mu held.
func (s *shard[K, V]) put(e *entry[K, V]) {
	t := s.tab.Load()
	for i := (e.hash >> slotBits) & t.mask; ; i = (i + 1) & t.mask {
		switch t.slots[i].Load() {
		case s.tomb:
			t.slots[i].Store(e) // reuses a tombstone: used is unchanged
			return
		case nil:
			t.slots[i].Store(e)
			s.used++
			s.grow()
			return
		}
	}
}

// grow rebuilds the table once its slots are too full: at double the size
// up to maxSlots, then at the same size to clear tombstones. Called with mu
// held; O(entries), amortised over at least a quarter-table of inserts.
func (s *shard[K, V]) grow() {
	size := len(s.tab.Load().slots)
	switch {
	case size < s.maxSlots && 2*s.used > size:
		size *= 2
	case 4*s.used > 3*size:
	default:
		return
	}
	t := newTable[K, V](size)
	for _, e := range s.ring {
		i := (e.hash >> slotBits) & t.mask
		for t.slots[i].Load() != nil {
			i = (i + 1) & t.mask
		}
		t.slots[i].Store(e)
	}
	s.used = len(s.ring)
	s.tab.Store(t)
}

// insert adds a new entry for a key not in the shard. Called with mu held.
func (s *shard[K, V]) insert(e *entry[K, V]) {
	e.idx = len(s.ring)
	s.ring = append(s.ring, e)
	s.put(e)
}

// replace publishes e in table slot i in place of old, taking over old's
// ring slot and reference bit. Called with mu held.
func (s *shard[K, V]) replace(i uint64, old, e *entry[K, V]) {
	e.idx = old.idx
	e.ref.Store(old.ref.Load())
	s.ring[e.idx] = e
	s.tab.Load().slots[i].Store(e)
}

// remove takes e out of the table (leaving a tombstone) and out of the
// ring, whose last entry fills the hole. Called with mu held.
func (s *shard[K, V]) remove(e *entry[K, V]) {
	t := s.tab.Load()
	for i := (e.hash >> slotBits) & t.mask; ; i = (i + 1) & t.mask {
		x := t.slots[i].Load()
		if x == e {
			t.slots[i].Store(s.tomb)
			break
		}
		if x == nil {
			panic("cache: entry missing from its shard's table")
		}
	}
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
// Readers may set bits behind the hand, so after two turns of the ring the
// entry under the hand is taken whatever its bit. Called with mu held.
func (s *shard[K, V]) victim(clk *clock) (*entry[K, V], EvictReason) {
	for steps := 0; ; steps++ {
		if s.hand >= len(s.ring) {
			s.hand = 0
		}
		e := s.ring[s.hand]
		s.hand++
		if e.keepUntil != 0 && clk.now() >= e.keepUntil {
			return e, ReasonExpired
		}
		if e.ref.Load() != 0 && steps < 2*len(s.ring) {
			e.ref.Store(0)
			continue
		}
		return e, ReasonCapacity
	}
}
