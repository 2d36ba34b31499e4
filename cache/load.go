package cache

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
)

// Loader loads the value for key from the source of truth. It runs on a
// context detached from any single caller: it carries the values of the
// caller that started the load, ends at Options.LoadTimeout, when every
// waiter has given up, or at [Cache.Close], and should be honoured.
type Loader[K comparable, V any] func(ctx context.Context, key K) (V, error)

// BulkLoader loads many keys in one call, for [Cache.GetOrLoadMany]. It
// returns the values it found; a key it leaves out is reported as not found.
type BulkLoader[K comparable, V any] func(ctx context.Context, keys []K) (map[K]V, error)

// errAbandoned is the cause of a load's cancellation when every waiter gave up.
var errAbandoned = errors.New("cache: every waiter gave up")

// flight is one loader call in progress, serving one key (Loader) or
// several (BulkLoader). Its context is cancelled only when every waiter has
// left, unless it is a background refresh, which no waiter owns.
type flight struct {
	mu         sync.Mutex
	waiters    int
	abandoned  bool
	background bool
	cancel     context.CancelCauseFunc
	done       chan struct{} // closed once every call of the flight is settled
}

// join adds a waiter, or reports false when the flight was abandoned and
// its result must not be awaited as if it were live.
func (f *flight) join() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.abandoned {
		return false
	}
	f.waiters++
	return true
}

// leave drops a waiter that gave up; the last one out cancels the load.
func (f *flight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiters--
	if f.waiters == 0 && !f.background {
		f.abandoned = true
		f.cancel(errAbandoned)
	}
}

// call is one key's share of a flight: its result, written before the
// flight's done channel is closed.
type call[V any] struct {
	f       *flight
	val     V
	err     error
	stale   bool // val is a stale value served because the load failed
	dropped bool // Set, Delete or Purge ran meanwhile: do not store the result
}

// newFlight makes the context a load runs on: the values of ctx, none of its
// cancellation, LoadTimeout, and cancellation by Close.
func (c *Cache[K, V]) newFlight(ctx context.Context, waiters int, background bool) (*flight, context.Context, func()) {
	lctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stopClose := context.AfterFunc(c.closing, func() { cancel(ErrClosed) })
	release := func() { stopClose(); cancel(nil) }
	if c.loadTimeout > 0 {
		var cancelTimeout context.CancelFunc
		lctx, cancelTimeout = context.WithTimeout(lctx, c.loadTimeout)
		release = func() { cancelTimeout(); stopClose(); cancel(nil) }
	}
	f := &flight{waiters: waiters, background: background, cancel: cancel, done: make(chan struct{})}
	return f, lctx, release
}

// hit classifies an entry found for a lookup.
type hit uint8

const (
	miss       hit = iota // absent or expired
	fresh                 // serve it
	refreshDue            // serve it, and reload it in the background
	staleRetry            // expired, but its reload failed lately: serve it stale
)

// classify says what a lookup that found e (maybe nil) should do. It reads
// the clock, into *t, only when e has a deadline.
func classify[K comparable, V any](e *entry[K, V], t *int64) hit {
	if e == nil {
		return miss
	}
	refreshAt := e.refreshAt.Load()
	if e.expires != 0 || refreshAt != 0 {
		if *t == 0 {
			*t = now()
		}
		if e.expires != 0 && *t >= e.expires {
			if r := e.retryAt.Load(); r != 0 && *t < r {
				return staleRetry
			}
			return miss
		}
		if refreshAt != 0 && *t >= refreshAt {
			return refreshDue
		}
	}
	return fresh
}

// GetOrLoad returns key's value from the cache or, on a miss, from loader,
// storing what it loads. However many callers miss key together, one loader
// call runs; each caller waits on its own ctx and gets ctx.Err() as soon as
// ctx ends, while the load goes on for the others and is cancelled only
// when every caller has given up. A panic in loader becomes a *[PanicError]
// for every waiter, and a loader that ends its goroutine with
// runtime.Goexit gives them [ErrLoaderExited].
//
// A loader error is returned to every waiter and cached for NegativeTTL
// when that is set; with StaleIfError, an expired value is returned instead
// of the error. With RefreshAfter, a hit older than that is returned at once
// and reloaded in the background, once per key, through loader.
//
// A nil ctx or loader is an error, and so is a key not equal to itself
// ([ErrKeyNotComparable]). A miss after Close is [ErrClosed].
func (c *Cache[K, V]) GetOrLoad(ctx context.Context, key K, loader Loader[K, V]) (V, error) {
	var zero V
	if ctx == nil {
		return zero, errNilContext
	}
	if loader == nil {
		return zero, errors.New("cache: nil loader")
	}
	h, s := c.locate(key)
	for {
		var t int64
		e := s.find(key, h)
		if state := classify(e, &t); state != miss {
			e.touch()
			c.hit(h)
			if state == staleRetry {
				c.counters.staleServed.Add(1)
			}
			if state == refreshDue && e.err == nil {
				c.counters.staleServed.Add(1)
				if e.refreshing.CompareAndSwap(false, true) {
					c.refresh(ctx, s, key, h, e, loader)
				}
			}
			return e.value, e.err
		}

		if err := ctx.Err(); err != nil {
			c.miss(h)
			return zero, err
		}
		if key != key {
			// A NaN key: its load could never be shared, stored or even
			// removed from the map of loads in flight.
			c.miss(h)
			return zero, ErrKeyNotComparable
		}
		s.mu.Lock()
		t = 0
		if classify(s.find(key, h), &t) != miss { // filled while we waited for the lock
			s.mu.Unlock()
			continue
		}
		cl := s.calls[key]
		if cl != nil {
			if !cl.f.join() {
				s.mu.Unlock()
				// The load in flight was abandoned by its waiters; wait for
				// it to return rather than run a second loader beside it.
				select {
				case <-cl.f.done:
					continue
				case <-ctx.Done():
					c.miss(h)
					return zero, ctx.Err()
				}
			}
			c.counters.coalesced.Add(1)
		} else {
			f, lctx, release := c.newFlight(ctx, 1, false)
			cl = &call[V]{f: f}
			err := c.goTracked(func() { c.runLoad(s, key, h, cl, lctx, release, loader) })
			if err != nil {
				release()
				s.mu.Unlock()
				c.miss(h)
				return zero, err
			}
			s.calls[key] = cl
		}
		c.miss(h)
		s.mu.Unlock()
		return c.wait(ctx, cl)
	}
}

// wait blocks until cl is settled or ctx ends.
func (c *Cache[K, V]) wait(ctx context.Context, cl *call[V]) (V, error) {
	select {
	case <-cl.f.done:
		if cl.stale {
			c.counters.staleServed.Add(1)
		}
		return cl.val, cl.err
	case <-ctx.Done():
		cl.f.leave()
		var zero V
		return zero, ctx.Err()
	}
}

// refresh starts a background reload of key unless a load is in flight or
// MaxRefreshes are running.
func (c *Cache[K, V]) refresh(ctx context.Context, s *shard[K, V], key K, h uint64, e *entry[K, V], loader Loader[K, V]) {
	if !c.acquireRefresh() {
		c.counters.refreshesSkipped.Add(1)
		e.refreshing.Store(false) // a later hit tries again
		return
	}
	started := false
	defer func() {
		if !started {
			c.inRefresh.Add(-1)
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find(key, h) != e {
		return // a newer entry replaced e: it has its own flag
	}
	if s.calls[key] != nil {
		// A load is in flight, but its result may never replace e (a Set
		// made it obsolete): clear the flag so that a hit after it is over
		// starts the refresh.
		e.refreshing.Store(false)
		return
	}
	f, lctx, release := c.newFlight(ctx, 0, true)
	cl := &call[V]{f: f}
	done := func() { release(); c.inRefresh.Add(-1) }
	err := c.goTracked(func() { c.runLoad(s, key, h, cl, lctx, done, loader) })
	if err != nil {
		release()
		e.refreshing.Store(false)
		return
	}
	started = true
	c.counters.refreshes.Add(1)
	s.calls[key] = cl
}

// acquireRefresh takes one of the MaxRefreshes slots, or reports false
// when all are taken.
func (c *Cache[K, V]) acquireRefresh() bool {
	for {
		n := c.inRefresh.Load()
		if n >= c.maxRefreshes {
			return false
		}
		if c.inRefresh.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// runLoad runs loader for cl's flight on its own goroutine and settles
// it. The settling is deferred, so that a loader that ends the goroutine
// with runtime.Goexit still answers its waiters, with ErrLoaderExited,
// and frees the key for the next load; the waiters are released in a defer
// of its own, so that an OnEvict that ends the goroutine while the value
// is stored does not strand them either.
func (c *Cache[K, V]) runLoad(s *shard[K, V], key K, h uint64, cl *call[V], lctx context.Context, release func(), loader Loader[K, V]) {
	defer release()
	defer close(cl.f.done)
	var v V
	err := ErrLoaderExited
	defer func() {
		if perr := c.settle(s, key, h, cl, v, err, lctx); err == nil {
			err = perr
		}
		c.countLoad(err)
	}()
	v, err = callLoader(lctx, loader, key)
}

// callLoader runs loader, turning a panic into a *PanicError.
func callLoader[K comparable, V any](ctx context.Context, loader Loader[K, V], key K) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return loader(ctx, key)
}

// settle records the outcome of key's load in cl and in the cache, under
// s's lock. A value is stored unless Set, Delete or Purge ran meanwhile. On
// an error, a value still fresh, or expired but within StaleIfError, is
// kept and handed to the waiters; otherwise the error is cached for
// NegativeTTL, unless the load was cancelled by the cache itself. If
// OnEvict panics for an entry that storing evicted, the value stays
// stored, the waiters get the panic as a *PanicError instead, and settle
// returns it.
func (c *Cache[K, V]) settle(s *shard[K, V], key K, h uint64, cl *call[V], v V, err error, lctx context.Context) error {
	var ev evictions[K, V]
	s.mu.Lock()
	if s.calls[key] == cl {
		delete(s.calls, key)
	}
	clk := &clock{}
	switch {
	case err == nil:
		cl.val = v
		if !cl.dropped {
			c.store(s, key, h, v, nil, c.ttl, clk, &ev)
		}
	default:
		cl.err = err
		e := s.find(key, h)
		if e != nil && e.err == nil && !cl.dropped && (e.keepUntil == 0 || clk.now() < e.keepUntil) {
			// Keep serving the old value; try again after NegativeTTL, or
			// RefreshAfter when no NegativeTTL is set.
			cl.val, cl.err = e.value, nil
			cl.stale = e.expires != 0 && clk.now() >= e.expires
			if cl.stale && c.negativeTTL > 0 {
				// Serve the stale value without asking the failing source
				// again for NegativeTTL (but not past StaleIfError).
				e.retryAt.Store(min(later(clk.now(), c.negativeTTL), e.keepUntil))
			}
			if c.refreshAfter > 0 {
				retry := c.refreshAfter
				if c.negativeTTL > 0 {
					retry = c.negativeTTL
				}
				e.refreshAt.Store(later(clk.now(), retry))
			}
			e.refreshing.Store(false)
			break
		}
		cause := context.Cause(lctx)
		cancelledHere := cause == errAbandoned || cause == ErrClosed
		if c.negativeTTL > 0 && !cl.dropped && !cancelledHere {
			c.store(s, key, h, v, err, c.negativeTTL, clk, &ev)
		}
	}
	s.mu.Unlock()
	if perr := c.notifyContained(&ev); perr != nil {
		var zero V
		cl.val, cl.err, cl.stale = zero, perr, false
		return perr
	}
	return nil
}

// countLoad counts one loader call and its failure.
func (c *Cache[K, V]) countLoad(err error) {
	c.counters.loads.Add(1)
	if err != nil {
		c.counters.loadErrors.Add(1)
	}
}
