package cache

import (
	"errors"
	"time"
)

// DefaultMaxEntries is the bound used when Options.MaxEntries is zero.
const DefaultMaxEntries = 10_000

// DefaultMaxRefreshes is the bound used when Options.MaxRefreshes is zero.
const DefaultMaxRefreshes = 64

// EvictReason says why an entry left the cache; it is passed to Options.OnEvict.
type EvictReason uint8

const (
	// ReasonCapacity: the entry was the one chosen to make room for a new one.
	ReasonCapacity EvictReason = iota + 1
	// ReasonExpired: the entry's TTL (and any StaleIfError window) had passed.
	ReasonExpired
	// ReasonDeleted: the entry was removed by [Cache.Delete] or [Cache.Purge].
	ReasonDeleted
)

// String returns "capacity", "expired" or "deleted".
func (r EvictReason) String() string {
	switch r {
	case ReasonCapacity:
		return "capacity"
	case ReasonExpired:
		return "expired"
	case ReasonDeleted:
		return "deleted"
	}
	return "unknown"
}

// Options configures a [Cache]. The zero value is valid: 10,000 entries, no
// TTL, no refresh, no negative caching.
type Options[K comparable, V any] struct {
	// MaxEntries bounds the number of entries, negative ones included. The
	// bound is exact: Len never exceeds it. Defaults to [DefaultMaxEntries].
	MaxEntries int
	// TTL is how long an entry set by Set or loaded by GetOrLoad is fresh.
	// Zero means entries never expire (they still leave by capacity).
	// Defaults to 0.
	TTL time.Duration
	// Jitter, in [0, 1), shortens each entry's TTL by a random fraction of up
	// to Jitter, so that keys written together do not expire together. A TTL
	// is never lengthened. Defaults to 0.
	Jitter float64
	// RefreshAfter, when positive, makes GetOrLoad serve a hit older than
	// this at once and reload it in the background, once per key
	// (stale-while-revalidate). It must be less than TTL when TTL is set.
	// Defaults to 0 (no refresh).
	RefreshAfter time.Duration
	// MaxRefreshes bounds the background reloads of RefreshAfter that run
	// at once, across all keys; a hit due for a refresh while that many run
	// is served as it is, counted in Stats.RefreshesSkipped, and a later
	// hit starts the refresh. Defaults to [DefaultMaxRefreshes].
	MaxRefreshes int
	// StaleIfError, when positive, keeps an expired entry for this long past
	// its TTL: if the load that should replace it fails, GetOrLoad returns
	// the stale value instead of the error. Defaults to 0.
	StaleIfError time.Duration
	// NegativeTTL, when positive, caches a loader error for this long, so a
	// failing backend is asked at most once per key per NegativeTTL. Get
	// reports such an entry as a miss; GetOrLoad returns its error. When
	// StaleIfError serves a stale value in place of the error, GetOrLoad
	// keeps serving it for NegativeTTL (within StaleIfError) before it
	// asks the source again. Defaults to 0 (errors are not cached).
	NegativeTTL time.Duration
	// LoadTimeout, when positive, bounds every load, foreground or
	// background, on the loader's context. Defaults to 0 (loads end when the
	// loader returns, when every waiter has given up, or at Close).
	LoadTimeout time.Duration
	// OnEvict, when set, is called after an entry with a value leaves the
	// cache by capacity, expiry, Delete or Purge (not when Set replaces it).
	// It runs on the goroutine that caused the eviction, after the cache's
	// locks are released, so it may call the cache. A panic in it goes on
	// to the caller of the method that evicted, except on a load's own
	// goroutine, when storing the loaded value evicted an entry: there the
	// panic is recovered, the value stays stored, and every waiter of that
	// load gets a *[PanicError] with OnEvict set (a background refresh with
	// no waiter counts it in Stats.LoadErrors). Defaults to nil.
	OnEvict func(key K, value V, reason EvictReason)
}

// validate reports the first invalid field of o.
func (o *Options[K, V]) validate() error {
	switch {
	case o.MaxEntries < 0:
		return errors.New("cache: MaxEntries must not be negative")
	case o.TTL < 0:
		return errors.New("cache: TTL must not be negative")
	case o.Jitter < 0 || o.Jitter >= 1 || o.Jitter != o.Jitter:
		return errors.New("cache: Jitter must be in [0, 1)")
	case o.RefreshAfter < 0:
		return errors.New("cache: RefreshAfter must not be negative")
	case o.TTL > 0 && o.RefreshAfter >= o.TTL:
		return errors.New("cache: RefreshAfter must be less than TTL")
	case o.MaxRefreshes < 0:
		return errors.New("cache: MaxRefreshes must not be negative")
	case o.StaleIfError < 0:
		return errors.New("cache: StaleIfError must not be negative")
	case o.NegativeTTL < 0:
		return errors.New("cache: NegativeTTL must not be negative")
	case o.LoadTimeout < 0:
		return errors.New("cache: LoadTimeout must not be negative")
	}
	return nil
}
