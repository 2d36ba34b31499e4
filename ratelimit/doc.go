// Package ratelimit decides, per key, whether a request may go ahead now.
//
// # Limits and results
//
// A [Limit] is Rate events per Period with bursts of up to Burst
// ([PerSecond], [PerMinute], [PerHour], [PerDay], [NewLimit]). Every limiter
// implements [Limiter]: AllowN(ctx, key, n) spends n units of key's quota
// if it can and returns a [Result] saying whether it did, how much is left
// (Remaining), when the same request would succeed (RetryAfter) and when
// the key is full again (ResetAfter). A denied request spends nothing.
// A cost below 1 ([ErrInvalidCost]), above the burst ([ErrCostExceedsBurst])
// or an empty key ([ErrEmptyKey]) is an error, never a silent deny.
//
// # In-memory limiters
//
//   - [GCRA]: one int64 per key (its theoretical arrival time); exact, and
//     the default choice.
//   - [TokenBucket]: an x/time/rate.Limiter per key, adding
//     [TokenBucket.Wait] (fair queueing by reservation) and
//     [TokenBucket.Reserve].
//   - [SlidingLog]: the time of every admitted unit in the last Period;
//     exactly Rate in any Period, at 8×Rate bytes per key.
//   - [SlidingWindow]: Cloudflare's sliding-window counter; O(1) per key,
//     approximate.
//   - [Concurrency]: at most Max in flight per key, with
//     [Concurrency.Acquire] returning a release func, and leases that free
//     a slot if its holder dies.
//
// Each keeps its keys in a sharded map capped at [Options].MaxKeys (default
// 100,000): a new key beyond the cap evicts an old one in approximately
// least-recently-used order (second chance), and keys that have been idle
// a whole Period are dropped lazily as new keys arrive. Nothing runs in the
// background, so there is nothing to Close. Calls on a known key allocate
// nothing. [GCRA] decides for a known key without taking any lock: its
// per-key state is one atomic word, found through an index read without
// locks and updated by compare-and-swap, so it is still exact under
// contention. The others lock the key's shard. A new key takes the lock.
// A stream of new keys allocates nothing once the cap is reached, since
// dropped keys' memory is reused, except that the token bucket needs a
// fresh x/time/rate.Limiter when the reused one had not refilled, and GCRA
// a fresh 128-byte node when it evicts a key that still owed time (a
// lock-free call may still hold that node, and reusing it is safe only
// once the old key's TAT is in the past).
//
// Each limiter reads the clock once per call, through time.Now, so tests
// can drive them with testing/synctest.
//
// # HTTP middleware
//
// [Middleware] limits net/http handlers by a [KeyFunc] — [KeyByIP], which
// believes X-Forwarded-For and Forwarded only from trusted proxies and
// buckets IPv6 by /64, [KeyByHeader], or your own — under one or more
// policies ([Policy]; the first to deny decides). Every response carries
// the draft-ietf-httpapi-ratelimit-headers-10 fields RateLimit-Policy and
// RateLimit ([LegacyHeaders] adds X-RateLimit-*); a denial is 429 with
// Retry-After and an application/problem+json body ([OnLimited] writes
// your own instead); a key function error is 400, never a shared key. [Shadow] with [OnDecision] records decisions
// without enforcing them.
//
// # When the store fails
//
// [WithFailurePolicy] wraps a limiter whose store can fail (a Redis limiter
// from redisrate) in a [Guarded] limiter: each call gets a timeout, a circuit
// breaker stops calling a store that keeps failing and probes it again after
// a while, and meanwhile the [FailurePolicy] answers — [FailOpen] (the
// default, so that an outage of the limiter's store does not become an outage
// of the service), [FailClosed], or [Fallback] to an in-memory limiter that
// takes its share of the limit across a stated number of replicas.
// [FailureOptions].Observe sees every decision, error and fallback.
//
// # Waiting
//
// [Wait] blocks until any Limiter admits a request, honouring ctx.
//
// # Many instances
//
// The subpackage redisrate implements the same algorithms on Redis, so
// that many instances share one quota; ratelimittest holds the conformance
// suite every Limiter passes.
package ratelimit
