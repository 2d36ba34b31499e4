// Package ratelimittest is the conformance suite for
// [github.com/asynckit/asynckit/ratelimit.Limiter] implementations.
//
// # Use
//
// Every limiter in asynckit, in memory and on Redis, passes [Run]; a
// Limiter of your own should too:
//
//	func TestConformance(t *testing.T) {
//		ratelimittest.Run(t, ratelimittest.Config{
//			New: func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error) {
//				return mylimiter.New(lim)
//			},
//			Synctest: true, // time.Now and time.Sleep are synthetic for in-memory limiters
//		})
//	}
//
// # What it checks
//
// Bad calls are the documented errors; a fresh key admits exactly its burst
// and then denies; cost n spends n; a denied request spends nothing; keys are
// independent; a denied request is admitted after its RetryAfter and, with
// synthetic time, not one nanosecond before; the full quota is back after
// ResetAfter; and 64 goroutines racing on one key are admitted exactly
// burst times.
//
// # Time
//
// The suite only ever waits with time.Sleep. With Config.Synctest each
// check runs inside a testing/synctest bubble, where sleeps are instant and
// exact, so the checks can also assert that admission does not come early.
// Without it (a Redis limiter, whose clock is the server's) the waits are
// real: the checks that wait use a period of one second, and the checks
// that count use periods of an hour, so the real time that passes during
// them cannot change the count. The whole suite then takes about three
// seconds.
//
// # Failure policies
//
// A [Recorder] keeps the events a [ratelimit.Guarded] limiter reports
// through FailureOptions.Observe, so that a test can see, call by call,
// whether the store was tried, what the policy answered and whether the
// breaker is open.
package ratelimittest
