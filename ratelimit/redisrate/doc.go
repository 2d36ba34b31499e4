// Package redisrate implements the limiters of package ratelimit on Redis,
// so that many instances of a service share one exact limit.
//
// # Algorithms
//
//   - [NewGCRA]: the generic cell rate algorithm; one string per key.
//   - [NewSlidingLog]: an exact sliding log; a sorted set of up to Rate
//     members per key.
//   - [NewSlidingWindow]: the approximate sliding-window counter; a hash of
//     three numbers per key.
//   - [NewConcurrency]: at most Max holders in flight per key, with
//     [Concurrency.Acquire] and leases that free a dead holder's slot.
//
// All of them return a [Limiter] (Concurrency embeds one), which passes
// the same conformance suite, ratelimittest.Run, as the in-memory
// limiters; [Limiter.Wait] blocks until admitted.
//
// # One round trip, Redis's clock
//
// Each decision is one atomic Lua script sent with EVALSHA (go-redis's
// Script.Run falls back to EVAL, once per server, if the script is not
// cached yet). The script reads the time with Redis's TIME, never the
// caller's clock, so instances whose clocks disagree still share one exact
// limit. It sets the key's expiry in the same call, so no key outlives its
// usefulness or is ever left without a TTL.
//
// Redis runs scripts on its one thread, often on the same cores as its
// callers, so what a script costs there bounds throughput as much as the
// client does. The GCRA script therefore returns a single integer, the
// time to the key's theoretical arrival time (negated for a denial), from
// which the Limiter derives the Result, rather than a table of its four
// fields. Against a local Redis 7.0 on a 2-core machine, with Redis's own
// CPU time measured over pipelined calls, a GCRA decision costs it about
// 8 µs (go-redis/redis_rate's about 12); bench/ratelimit compares them end
// to end.
//
// # Batching
//
// With [Options].Batch above 1, concurrent decisions of one Limiter share
// round trips, as a database commits a group of transactions at once. Up
// to 8 round trips are in flight: a call that finds one free sends at
// once, alone, as an unbatched limiter would, and when all 8 are out the
// calls that arrive queue, and go out as pipelines of up to Batch scripts
// as round trips return. Each decision is still its own EVALSHA, so every
// guarantee above holds (a pipeline that finds the script uncached loads
// it with SCRIPT LOAD and sends those decisions again); what changes is
// the cost per decision under load, in system calls on both sides.
// Nothing runs in the background. Against a local Redis on a 2-core
// machine, with Batch 64, 64 callers made 144,000–147,000 GCRA decisions
// a second against 91,000–94,000 unbatched, and 8 callers 79,000–81,000,
// level with unbatched. The price is that a call may wait for the round
// trips ahead of it, and the call that sends a pipeline waits for all of
// it, up to the latest deadline among its calls.
//
// # Keys and Redis Cluster
//
// A key k is stored as Options.Prefix + "{" + k + "}". The braces make k the
// hash tag, so a Redis Cluster keeps each limiter key in one slot; every
// script touches exactly one key. The limiters take a redis.Scripter, which
// redis.Client, redis.ClusterClient, redis.Ring and any
// redis.UniversalClient are.
//
// # When Redis fails
//
// A Limiter returns Redis's errors as they are. Wrap it with
// ratelimit.WithFailurePolicy to fail open, fail closed or fall back to an
// in-memory limiter, with a per-call timeout and a circuit breaker. go-redis
// honours a call's ctx deadline only with Options.ContextTimeoutEnabled set;
// set it, or a slow Redis holds each call for the client's ReadTimeout.
//
// go-redis retries a command whose connection broke (Options.MaxRetries,
// 3 by default), even if Redis had already run it; a decision can then be
// charged twice. Set MaxRetries to -1 where charging only once matters more
// than riding out a dropped connection.
package redisrate
