// Package rediscache puts Redis behind an in-process [cache.Cache], as a
// second tier shared by every instance of a service.
//
//	users, err := rediscache.New(ctx, rediscache.Options[int64, User]{
//		Client: rdb, Namespace: "myapp:users:", TTL: 10 * time.Minute, Jitter: 0.1,
//		Local:  cache.Options[string, User]{MaxEntries: 10_000, TTL: 30 * time.Second},
//		Invalidate: true, LockTTL: 5 * time.Second,
//	})
//	u, err := users.GetOrLoad(ctx, id, loadUser)
//
// # Lookups
//
// [Cache.GetOrLoad] looks in the local tier, then in Redis, then calls the
// loader; a value from Redis is kept locally, and a value from the loader is
// written to both tiers. Each tier applies its own TTL and jitter
// (Options.Local.TTL and Jitter locally, Options.TTL and Options.Jitter in
// Redis; a zero Options.Local.TTL defaults to Options.TTL). Values are
// encoded by a [Codec], [JSON] by default. Keys become strings through
// Options.Key and live in Redis as Namespace+"v{:"+key+"}": the key in a
// hash tag, so that the keys the cache keeps for one key share a Redis
// Cluster slot. The layout is injective: two caches never share a Redis
// key, even when one's Namespace prefixes the other's.
//
// A loaded value is written to Redis only where there is none: a value
// that appeared meanwhile, from a [Cache.Set] or another instance's load,
// is at least as new as what the loader read, and is kept (a value that
// could not be decoded is replaced). A [Cache.Delete] racing a slow load,
// on any instance, is guarded in Redis itself: each key has a generation,
// a random token under Namespace+"g{:"+key+"}", that a load reads before
// its loader runs and that Delete replaces in the same script as it
// deletes the value; the load's write-back is a script that writes only if
// the generation is unchanged. So a load that began before a Delete never
// writes back what it read, whether or not its instance has heard of the
// Delete yet. A generation lives for Options.TTL after it was last read or
// replaced: a load slower than that, or one that cannot read the
// generation, stores nothing in Redis (its caller still gets the value).
// A load that hears of the key's deletion or invalidation while it runs
// (on its own instance, or by pub/sub with Options.Invalidate) does not
// even send the write.
//
// A lookup that misses Redis therefore costs one more round trip before
// the loader (the generation), and the write-back and Delete run as Lua
// scripts; a hit costs one GET, as before.
//
// # Redis failures
//
// Redis is an optimisation, never a dependency of a read: when a Redis call
// or a decode fails, the error is counted in [Stats].Errors, passed to
// Options.OnError, and the lookup goes on to the loader. Writes
// ([Cache.Set], [Cache.Delete]) do return their Redis errors.
//
// A slow Redis is a subtler failure. Each caller still returns when its own
// context ends (the local tier sees to that), but the shared lookup waits
// for Redis before it calls the loader. go-redis applies a context's
// deadline to the socket only when the client has ContextTimeoutEnabled;
// otherwise a command blocked on a stalled server lasts until the client's
// ReadTimeout (3s by default), times its retries. Set Options.RedisTimeout,
// on a client with ContextTimeoutEnabled, to give up on each Redis command
// after that long and go on to the loader; New refuses RedisTimeout on a
// client known to ignore it.
//
// # Invalidation
//
// With Options.Invalidate, [Cache.Set] and [Cache.Delete] publish the key
// on the channel Namespace+"invalidate", and each instance runs one
// subscriber goroutine that drops its local copy, typically within a
// millisecond or two. Pub/sub delivers at most once: messages published
// while an instance's subscription is disconnected are lost. go-redis
// reconnects and subscribes again on its own (its health check pings every
// few seconds); when it does, the instance drops every local copy and
// reports [ErrResubscribed] to Options.OnError, so a lost invalidation
// leaves a stale copy only until the subscription is back (and never
// beyond Options.Local.TTL). [Cache.Close] stops the subscriber.
//
// # Cross-instance single flight
//
// Within an instance, concurrent misses of a key share one lookup. With
// Options.LockTTL, instances also share it: the first to miss in Redis
// takes a lock (SET NX PX with a random owner token) and loads; the others
// poll Redis for the value with doubling waits (Options.LockPoll up to
// Options.LockPollMax) until it appears, the lock is released or expires,
// or their context ends. The owner releases the lock with a Lua
// compare-and-delete, so an owner whose lock expired never releases the
// next owner's. A Redis error while locking makes the instance load on its
// own.
package rediscache
