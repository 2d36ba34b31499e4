package cache

import (
	"context"
	"errors"
	"runtime/debug"
	"slices"
)

// GetOrLoadMany returns the values of keys, loading every key that is not
// cached with a single call of bulk — the fix for N+1 lookups. Keys already
// being loaded by another caller are awaited rather than loaded again, and
// the keys this call loads are shared with any GetOrLoad that misses them
// meanwhile. The result holds each key that has a value; a key that bulk
// left out (or that has [ErrNotFound] cached) is absent and not an error.
//
// If bulk fails, or a cached error other than ErrNotFound is met, the first
// such error is returned with the values that were found. When ctx ends
// first, GetOrLoadMany returns ctx.Err() at once and the load carries on
// for any other waiters. GetOrLoadMany does not start background refreshes;
// a hit due for one is served as it is. Duplicate keys are looked up once.
// A nil ctx or bulk is an error, and so is any key not equal to itself
// ([ErrKeyNotComparable]); a miss after Close is [ErrClosed].
func (c *Cache[K, V]) GetOrLoadMany(ctx context.Context, keys []K, bulk BulkLoader[K, V]) (map[K]V, error) {
	if ctx == nil {
		return nil, errNilContext
	}
	if bulk == nil {
		return nil, errors.New("cache: nil bulk loader")
	}
	for _, key := range keys {
		if key != key {
			return nil, ErrKeyNotComparable
		}
	}
	out := make(map[K]V, len(keys))
	var firstErr error
	keep := func(key K, v V, err error) {
		switch {
		case err == nil:
			out[key] = v
		case errors.Is(err, ErrNotFound):
		case firstErr == nil:
			firstErr = err
		}
	}

	var (
		waits   []pending[K, V]
		missing []K
		calls   []*call[V]
		shards  []*shard[K, V]
		hashes  []uint64
		own     *flight
		lctx    context.Context
		release func()
		seen    = make(map[K]struct{}, len(keys))
	)
	for _, key := range keys {
		if _, dup := seen[key]; dup {
			continue
		}
		seen[key] = struct{}{}
		h, s := c.locate(key)
		var t int64
		e := s.find(key, h)
		if state := classify(e, &t); state != miss {
			e.touch()
			c.hit(h)
			if state == staleRetry {
				c.counters.staleServed.Add(1)
			}
			keep(key, e.value, e.err)
			continue
		}
		c.miss(h)
		s.mu.Lock()
		t = 0
		if e := s.find(key, h); classify(e, &t) != miss { // filled meanwhile
			s.mu.Unlock()
			keep(key, e.value, e.err)
			continue
		}
		if cl := s.calls[key]; cl != nil {
			if cl.f.join() {
				c.counters.coalesced.Add(1)
				waits = append(waits, pending[K, V]{key, cl})
				s.mu.Unlock()
				continue
			}
			// An abandoned load is still running: load the key again in
			// this call rather than wait for it.
		}
		if ctx.Err() != nil {
			s.mu.Unlock()
			break
		}
		if own == nil {
			own, lctx, release = c.newFlight(ctx, 1, false)
		}
		cl := &call[V]{f: own}
		s.calls[key] = cl
		s.mu.Unlock()
		missing = append(missing, key)
		calls = append(calls, cl)
		shards = append(shards, s)
		hashes = append(hashes, h)
	}

	if own != nil {
		err := c.goTracked(func() {
			defer release()
			// Released in a defer of its own: see runLoad.
			defer close(own.done)
			var found map[K]V
			err := ErrLoaderExited
			// Settle in a defer, so that a bulk loader that ends the
			// goroutine with runtime.Goexit still answers every waiter.
			defer func() {
				var perr error
				for i, key := range missing {
					v, ok := found[key]
					var e error
					switch {
					case err != nil:
						e = c.settle(shards[i], key, hashes[i], calls[i], v, err, lctx)
					case !ok:
						e = c.settle(shards[i], key, hashes[i], calls[i], v, ErrNotFound, lctx)
					default:
						e = c.settle(shards[i], key, hashes[i], calls[i], v, nil, lctx)
					}
					if perr == nil {
						perr = e
					}
				}
				if err == nil {
					err = perr
				}
				c.countLoad(err)
			}()
			// bulk gets a copy: it may reorder its argument, while missing
			// stays aligned with calls, shards and hashes.
			found, err = callBulk(lctx, bulk, slices.Clone(missing))
		})
		if err != nil {
			// Closed: answer any GetOrLoad that joined the flight meanwhile.
			release()
			for i, key := range missing {
				s := shards[i]
				s.mu.Lock()
				if s.calls[key] == calls[i] {
					delete(s.calls, key)
				}
				calls[i].err = err
				s.mu.Unlock()
			}
			close(own.done)
			for _, w := range waits {
				w.cl.f.leave()
			}
			return nil, err
		}
		for i, key := range missing {
			waits = append(waits, pending[K, V]{key, calls[i]})
		}
	}
	if err := ctx.Err(); err != nil {
		c.leaveAll(own, waits, 0)
		return nil, err
	}

	for i, w := range waits {
		select {
		case <-w.cl.f.done:
			if w.cl.stale {
				c.counters.staleServed.Add(1)
			}
			keep(w.key, w.cl.val, w.cl.err)
		case <-ctx.Done():
			c.leaveAll(own, waits, i)
			return nil, ctx.Err()
		}
	}
	return out, firstErr
}

// pending is a key GetOrLoadMany waits for, and the call that will answer it.
type pending[K comparable, V any] struct {
	key K
	cl  *call[V]
}

// leaveAll withdraws from every flight still awaited from waits[from:] on:
// once from each key joined elsewhere, and once from this call's own flight.
func (c *Cache[K, V]) leaveAll(own *flight, waits []pending[K, V], from int) {
	for _, w := range waits[from:] {
		if w.cl.f != own {
			w.cl.f.leave()
		}
	}
	if own != nil {
		own.leave()
	}
}

// callBulk runs bulk, turning a panic into a *PanicError.
func callBulk[K comparable, V any](ctx context.Context, bulk BulkLoader[K, V], keys []K) (found map[K]V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return bulk(ctx, keys)
}
