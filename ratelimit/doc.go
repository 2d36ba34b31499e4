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
//   - [GCRA]: one int64 per key; the default choice.
//
// Each keeps its keys in a sharded map capped at [Options].MaxKeys with
// least-recently-used eviction; idle keys are dropped lazily as new keys
// arrive. Nothing runs in the background, so there is nothing to Close.
// Calls on a known key allocate nothing.
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
