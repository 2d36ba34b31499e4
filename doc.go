// Package asynckit is a set of building blocks for asynchronous Go services:
// the parts that every HTTP/JSON backend needs and usually writes again. Each
// job lives in its own package, and each package can be imported alone; this
// package holds no code, only this map.
//
// [github.com/asynckit/asynckit/cache] is an in-process, bounded TTL cache
// with cache-through: GetOrLoad runs one loader per key however many callers
// miss together, lets each caller give up on its own context, and adds
// stale-while-revalidate and negative caching. Its subpackage rediscache adds
// a Redis tier shared by every instance, with cross-instance invalidation.
//
// [github.com/asynckit/asynckit/ratelimit] decides whether a keyed request may
// go ahead: GCRA, token bucket, sliding windows and concurrency limits in
// memory, with bounded memory per key, a policy for when a shared store
// fails, and net/http middleware that speaks the standard RateLimit headers.
// Its subpackage redisrate makes the same decisions in one Redis round trip,
// so that many instances share one limit.
//
// [github.com/asynckit/asynckit/taskqueue] runs background tasks and tracks
// them through pending, running, succeeded, failed and canceled, with
// progress, retries, cancellation and graceful shutdown. Its state lives
// behind a small Store interface, with an in-memory store built in; its
// subpackage pgstore keeps tasks in Postgres, shared by every instance, and
// taskqueuetest is the conformance suite every Store passes.
//
// [github.com/asynckit/asynckit/fanout] runs a function over many items or
// several functions at once, with a concurrency limit, pacing, ordered
// results, aggregated errors and panics turned into errors.
//
// [github.com/asynckit/asynckit/txn] runs a function in a database/sql
// transaction carried in the context, nests with savepoints, retries
// serialization failures and deadlocks, and runs hooks after commit. It
// works with any driver; its subpackage txnmysql recognises MySQL's and
// MariaDB's retryable errors.
//
// [github.com/asynckit/asynckit/pagination] provides signed, opaque cursors,
// keyset WHERE and ORDER BY clauses that walk an index, and a generic Page
// type for cursor-paginated APIs.
package asynckit
