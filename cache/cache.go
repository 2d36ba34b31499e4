package cache

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Cache is a bounded, sharded, concurrency-safe cache from K to V with TTL,
// cache-through loading and stale-while-revalidate. Create one with [New];
// the zero value is not usable. All methods are safe for concurrent use.
type Cache[K comparable, V any] struct {
	shards  []shard[K, V]
	mask    uint64
	seed    maphash.Seed
	stripes []stripe // hit and miss counters, chosen by key hash
	smask   uint32

	ttl          int64 // nanoseconds; 0 = no expiry
	jitter       float64
	refreshAfter int64
	staleIfError int64
	negativeTTL  int64
	loadTimeout  time.Duration
	onEvict      func(K, V, EvictReason)
	maxRefreshes int64
	inRefresh    atomic.Int64 // background refreshes running

	counters counters

	// bgMu guards closed and the Add side of wg, so that no load starts
	// after Close has begun waiting.
	bgMu    sync.Mutex
	closed  bool
	wg      sync.WaitGroup
	closing context.Context
	stop    context.CancelCauseFunc
}

// New returns a cache configured by opts. Invalid options are an error that
// names the field; the zero Options gives a cache of [DefaultMaxEntries]
// entries without expiry. New starts no goroutine.
func New[K comparable, V any](opts Options[K, V]) (*Cache[K, V], error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	maxEntries := opts.MaxEntries
	if maxEntries == 0 {
		maxEntries = DefaultMaxEntries
	}
	procs := runtime.GOMAXPROCS(0)
	n := shardCount(maxEntries, procs)
	ns := min(max(64, 1<<bits.Len(uint(procs*16-1))), 4096) // ≤ 2^12: h>>52 has 12 bits
	c := &Cache[K, V]{
		stripes:      make([]stripe, ns),
		smask:        uint32(ns - 1),
		shards:       make([]shard[K, V], n),
		mask:         uint64(n - 1),
		seed:         maphash.MakeSeed(),
		ttl:          int64(opts.TTL),
		jitter:       opts.Jitter,
		refreshAfter: int64(opts.RefreshAfter),
		staleIfError: int64(opts.StaleIfError),
		negativeTTL:  int64(opts.NegativeTTL),
		loadTimeout:  opts.LoadTimeout,
		onEvict:      opts.OnEvict,
		maxRefreshes: int64(opts.MaxRefreshes),
	}
	if c.maxRefreshes == 0 {
		c.maxRefreshes = DefaultMaxRefreshes
	}
	// Split maxEntries exactly, so that the sum of the shard bounds is the
	// cache's bound.
	for i := range c.shards {
		capacity := maxEntries / n
		if i < maxEntries%n {
			capacity++
		}
		c.shards[i].init(capacity)
	}
	c.closing, c.stop = context.WithCancelCause(context.Background())
	return c, nil
}

// shardCount picks a power of two: enough shards that parallel callers
// rarely meet on one lock (16 per P, at most 1024), but never so many that a
// shard holds fewer than 64 entries, where per-shard eviction would stray
// far from a global LRU.
func shardCount(maxEntries, procs int) int {
	n := 1 << bits.Len(uint(procs*16-1))
	n = min(n, 1024)
	for n > 1 && maxEntries/n < 64 {
		n /= 2
	}
	return n
}

// locate returns key's hash and shard.
func (c *Cache[K, V]) locate(key K) (uint64, *shard[K, V]) {
	h := maphash.Comparable(c.seed, key)
	return h, &c.shards[h&c.mask]
}

// stripe holds a share of the hit and miss counts on a cache line of its
// own. A lookup counts itself on the stripe chosen by bits of its key's
// hash that pick neither the shard nor the slot: free to compute, and
// spread widely enough that two cores rarely write one line at once, even
// under a skewed load (a random stripe measured slower: the generator
// costs more than the rare shared line).
type stripe struct {
	hits, misses atomic.Uint64
	_            [48]byte
}

func (c *Cache[K, V]) hit(h uint64)  { c.stripes[uint32(h>>52)&c.smask].hits.Add(1) }
func (c *Cache[K, V]) miss(h uint64) { c.stripes[uint32(h>>52)&c.smask].misses.Add(1) }

// epoch anchors the cache's clock.
var epoch = time.Now()

// clockBase keeps readings of the clock positive (0 means "never" in an
// entry) even inside a testing/synctest bubble, whose fake time lies before
// epoch.
const clockBase = 1 << 62

// now is the cache's clock: nanoseconds on the monotonic clock, so a jump
// of the wall clock neither expires nor revives entries. time.Since reads
// only the monotonic clock, half the cost of time.Now, and is faked by
// testing/synctest like time.Now.
func now() int64 { return clockBase + int64(time.Since(epoch)) }

// later returns t+d, saturating instead of overflowing for huge TTLs.
func later(t, d int64) int64 {
	if d > math.MaxInt64-t {
		return math.MaxInt64
	}
	return t + d
}

// clock reads the time at most once per operation, and only when asked:
// a write to a cache without TTLs never reads it.
type clock struct{ t int64 }

func (c *clock) now() int64 {
	if c.t == 0 {
		c.t = now()
	}
	return c.t
}

// Get returns the value for key and true when a fresh entry holds one. An
// expired entry, a cached loader error and an absent key are all misses. Get
// takes no lock, never allocates, and reads the clock only when the entry
// has a TTL.
func (c *Cache[K, V]) Get(key K) (V, bool) {
	h, s := c.locate(key)
	e := s.find(key, h)
	if e != nil && e.err == nil && (e.expires == 0 || now() < e.expires) {
		e.touch()
		c.hit(h)
		return e.value, true
	}
	c.miss(h)
	if e != nil && e.keepUntil != 0 && now() >= e.keepUntil {
		c.removeIfDead(s, e)
	}
	var zero V
	return zero, false
}

// Set stores value under key with the cache's TTL (shortened by Jitter),
// replacing any entry, and evicts one entry of the same shard when it is
// full. A key not equal to itself (a NaN, or a value holding one) could
// never be found, so Set ignores it. A load of key in flight when Set is called still answers its
// waiters, but its result no longer replaces value.
func (c *Cache[K, V]) Set(key K, value V) {
	c.set(key, value, c.ttl)
}

// SetWithTTL is [Cache.Set] with a TTL for this entry alone (Jitter still
// applies). A ttl of zero or less means the entry never expires.
func (c *Cache[K, V]) SetWithTTL(key K, value V, ttl time.Duration) {
	c.set(key, value, max(int64(ttl), 0))
}

func (c *Cache[K, V]) set(key K, value V, ttl int64) {
	if key != key {
		return // a NaN key could never be found: storing it would only evict
	}
	h, s := c.locate(key)
	var ev evictions[K, V]
	s.mu.Lock()
	s.dropCall(key)
	c.store(s, key, h, value, nil, ttl, &clock{}, &ev)
	s.mu.Unlock()
	c.notify(&ev)
}

// Delete removes key and reports whether an entry was there. A load of key
// in flight still answers its waiters but does not store its result, and a
// caller that misses after Delete starts a load of its own rather than
// joining it. So a Delete after a write to the source of truth is never
// undone by an older load, and no caller that starts after the Delete
// returns sees a value read before it.
func (c *Cache[K, V]) Delete(key K) bool {
	h, s := c.locate(key)
	var ev evictions[K, V]
	s.mu.Lock()
	s.dropCall(key)
	e := s.find(key, h)
	if e != nil {
		s.remove(e)
		if e.err == nil {
			ev.add(c, e, ReasonDeleted)
		}
	}
	s.mu.Unlock()
	c.notify(&ev)
	return e != nil
}

// Len returns the number of entries held, including expired entries that
// have not been removed yet (expiry is lazy) and cached errors. It locks
// each shard in turn, so it costs O(shards).
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.ring)
		s.mu.Unlock()
	}
	return n
}

// Purge removes every entry, calling OnEvict for each one with a value.
// Loads in flight answer their waiters but do not store their results, and
// callers that miss after Purge start loads of their own, as after Delete.
func (c *Cache[K, V]) Purge() {
	for i := range c.shards {
		s := &c.shards[i]
		var ev evictions[K, V]
		s.mu.Lock()
		for _, cl := range s.calls {
			cl.dropped = true
		}
		clear(s.calls) // later misses load afresh; see dropCall
		if c.onEvict != nil {
			for _, e := range s.ring {
				if e.err == nil {
					ev.add(c, e, ReasonDeleted)
				}
			}
		}
		s.init(s.capacity)
		s.mu.Unlock()
		c.notify(&ev)
	}
}

// Close cancels every load and background refresh in flight and waits for
// their goroutines to return. After Close, Get, Set and Delete still work and
// hits are still served, but a key that must be loaded gives [ErrClosed].
// Close is idempotent and safe to call concurrently.
func (c *Cache[K, V]) Close() {
	c.bgMu.Lock()
	c.closed = true
	c.bgMu.Unlock()
	c.stop(ErrClosed)
	c.wg.Wait()
}

// goTracked runs f on a new goroutine that Close waits for, or reports
// ErrClosed once Close has begun.
func (c *Cache[K, V]) goTracked(f func()) error {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return nil
}

// expiry returns the absolute expiry for an entry stored now with ttl,
// shortened by a random fraction of up to Jitter; 0 means never.
func (c *Cache[K, V]) expiry(clk *clock, ttl int64) int64 {
	if ttl <= 0 {
		return 0
	}
	if c.jitter > 0 {
		ttl -= int64(rand.Float64() * c.jitter * float64(ttl))
	}
	return later(clk.now(), max(ttl, 1))
}

// store publishes a value (err == nil) or a cached error for key in s,
// evicting an entry if s is full. Called with s.mu held.
func (c *Cache[K, V]) store(s *shard[K, V], key K, h uint64, value V, err error, ttl int64, clk *clock, ev *evictions[K, V]) {
	e := &entry[K, V]{key: key, hash: h, value: value, err: err, expires: c.expiry(clk, ttl)}
	e.keepUntil = e.expires
	if err == nil {
		if e.expires != 0 {
			e.keepUntil = later(e.expires, c.staleIfError)
		}
		if c.refreshAfter > 0 {
			e.refreshAt.Store(later(clk.now(), c.refreshAfter))
		}
	}
	if i, old := s.slot(key, h); old != nil {
		s.replace(i, old, e)
		return
	}
	if len(s.ring) >= s.capacity {
		victim, reason := s.victim(clk)
		s.remove(victim)
		if victim.err == nil {
			ev.add(c, victim, reason)
		}
		c.counters.count(reason)
	}
	s.insert(e)
}

// removeIfDead drops e from s when it is still its key's entry and past
// its keep-until time.
func (c *Cache[K, V]) removeIfDead(s *shard[K, V], e *entry[K, V]) {
	var ev evictions[K, V]
	s.mu.Lock()
	if s.find(e.key, e.hash) == e {
		s.remove(e)
		c.counters.expirations.Add(1)
		if e.err == nil {
			ev.add(c, e, ReasonExpired)
		}
	}
	s.mu.Unlock()
	c.notify(&ev)
}

// evictions collects the entries to report to OnEvict once locks are
// released. It holds one entry without allocating, which is all that any
// single-key operation evicts.
type evictions[K comparable, V any] struct {
	one  eviction[K, V]
	n    int
	more []eviction[K, V]
}

type eviction[K comparable, V any] struct {
	key    K
	value  V
	reason EvictReason
}

func (ev *evictions[K, V]) add(c *Cache[K, V], e *entry[K, V], r EvictReason) {
	if c.onEvict == nil {
		return
	}
	x := eviction[K, V]{e.key, e.value, r}
	if ev.n == 0 {
		ev.one = x
	} else {
		ev.more = append(ev.more, x)
	}
	ev.n++
}

// notify calls OnEvict for ev on the caller's goroutine, where a panic in
// it goes on to the caller of the method that evicted.
func (c *Cache[K, V]) notify(ev *evictions[K, V]) {
	if ev.n == 0 {
		return
	}
	c.onEvict(ev.one.key, ev.one.value, ev.one.reason)
	for _, x := range ev.more {
		c.onEvict(x.key, x.value, x.reason)
	}
}

// notifyContained calls OnEvict for ev on a load's goroutine, where a panic
// would crash the program and leave the load's waiters without an answer:
// every call runs, and the first panic comes back as a *PanicError.
func (c *Cache[K, V]) notifyContained(ev *evictions[K, V]) error {
	if ev.n == 0 {
		return nil
	}
	err := c.evictContained(ev.one)
	for _, x := range ev.more {
		if perr := c.evictContained(x); err == nil {
			err = perr
		}
	}
	return err
}

// evictContained calls OnEvict for x, turning a panic into a *PanicError.
func (c *Cache[K, V]) evictContained(x eviction[K, V]) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack(), OnEvict: true}
		}
	}()
	c.onEvict(x.key, x.value, x.reason)
	return nil
}

var errNilContext = errors.New("cache: nil context")
