// Package cache is a bounded, sharded in-process cache with TTL and
// cache-through loading that is safe against stampedes, honours each
// caller's context, and serves stale values while it revalidates.
//
//	c, err := cache.New(cache.Options[int64, User]{MaxEntries: 10_000, TTL: time.Minute,
//		Jitter: 0.1, RefreshAfter: 45 * time.Second, NegativeTTL: time.Second})
//	u, err := c.GetOrLoad(ctx, id, func(ctx context.Context, id int64) (User, error) {
//		return db.User(ctx, id)
//	})
//
// # Storage and eviction
//
// [New] takes an [Options] whose zero value is valid: [DefaultMaxEntries]
// entries, no expiry. The cache is split into a power of two of shards
// (16 per GOMAXPROCS, at most 1024, at least 64 entries each), chosen by
// hashing the key with hash/maphash.Comparable and a per-cache seed. Each
// shard has an open-addressing hash table that lookups read without any
// lock, a mutex that writers take, and a CLOCK ring of its entries.
//
// MaxEntries is split exactly across the shards, so [Cache.Len] never
// exceeds it. Because keys hash unevenly, a shard may evict while others
// still have room: a cache streamed with distinct keys holds exactly
// MaxEntries, but one holding a fixed set of MaxEntries keys may have
// evicted a few percent of them. Size MaxEntries with that in mind.
//
// Keys follow the rules of Go map keys: an interface-typed key holding a
// value that cannot be compared (a slice, a map, a func) panics, as it
// does in a map. A key not equal to itself (a floating-point NaN, or a
// value holding one) could never be found again, so Set ignores it and
// GetOrLoad and GetOrLoadMany return [ErrKeyNotComparable].
//
// # Why this engine
//
// An exact LRU (hashicorp/golang-lru's simplelru, or a list under a
// sync.RWMutex) moves an entry on every hit, which needs an exclusive lock,
// and even a read lock is an atomic write to a word that every reader of
// the shard shares: under a skewed (Zipf) load, readers of the hot keys on
// different cores bounce that cache line between them. Here a hit writes
// nothing shared. Entries are immutable once published (a Set publishes a
// new one with an atomic store), tables are probed with atomic loads, the
// entry's CLOCK reference bit is set only when it is clear, and hits and
// misses are counted on one of many padded counters chosen by the hash.
// A hit never allocates. Eviction is CLOCK, an approximation of LRU: the
// sweep gives each recently used entry a second chance, and takes expired
// entries before any live one. On a Zipf trace its hit ratio is on par
// with LRU (see BenchmarkHitRatioZipf and bench/cache).
//
// A Set allocates one entry (a Set of a present key too), and a shard's
// table is rebuilt when it fills with deleted slots: amortised O(1).
//
// # Expiry
//
// Expiry is lazy: an entry past its TTL is a miss, and is removed when a
// lookup meets it or when the eviction sweep passes it. No goroutine runs
// in the background. Options.Jitter shortens each entry's TTL by a random
// fraction so that keys written together do not expire together;
// [Cache.SetWithTTL] sets a TTL per entry. Time is read on the monotonic
// clock (time.Since, which testing/synctest fakes), so wall-clock jumps do
// not expire or revive entries, and only for entries that have a TTL or a
// refresh time: a cache without TTLs never reads the clock on a Get.
//
// # Loading
//
// [Cache.GetOrLoad] runs one [Loader] call per key at a time however many
// callers miss together. Each caller waits on its own context and returns
// ctx.Err() the moment it ends; the load runs on a context detached from
// the callers (context.WithoutCancel of the first one, so values such as
// trace IDs pass through), bounded by Options.LoadTimeout, and cancelled
// only when every waiter has given up, or by [Cache.Close]. A loader panic
// becomes a *[PanicError] for every waiter, and a loader that calls
// runtime.Goexit gives them [ErrLoaderExited]. So does a panic in
// Options.OnEvict called by the load as it stores its value in a full
// cache (the PanicError's OnEvict field says so, and the value is stored). A Set, Delete or Purge during a
// load wins: the load still answers its waiters but does not store.
//
// A loader error is returned, not cached, unless Options.NegativeTTL is set.
// With Options.RefreshAfter, a hit older than that is returned at once and
// reloaded in the background once per key (stale-while-revalidate); with
// Options.StaleIfError, an expired value is served for that long if its
// reload fails. A failed background reload keeps the old value and is
// retried after NegativeTTL (or RefreshAfter when NegativeTTL is zero); a
// failed load of an expired value served stale is retried after
// NegativeTTL when that is set, and on the next lookup otherwise.
//
// [Cache.GetOrLoadMany] is the batch form: it loads every missing key with a
// single [BulkLoader] call, sharing in-flight loads in both directions with
// GetOrLoad.
//
// # Goroutines and Close
//
// Goroutines exist only while a load or refresh runs: at most one per key in
// flight. Foreground loads are bounded by the callers waiting for them;
// background refreshes, which no caller waits for, by Options.MaxRefreshes
// ([DefaultMaxRefreshes] at once; a refresh over the bound is skipped and
// counted, and a later hit starts it). [Cache.Close] cancels them and waits
// for them to return.
//
// # Statistics
//
// [Cache.Stats] reports hits, misses, loads, load errors, coalesced waiters,
// stale values served, refreshes (and those skipped by MaxRefreshes),
// evictions and expirations. Hits and misses
// are counted on striped counters and summed on demand, so counting does
// not make parallel readers contend on one counter.
package cache
