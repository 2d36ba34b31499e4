// Package taskqueuetest is the conformance suite every taskqueue.Store
// passes: the in-memory store in this module, and any durable store.
//
// # Use
//
//	func TestConformance(t *testing.T) {
//		taskqueuetest.Run(t, func(t *testing.T) taskqueue.Store {
//			return newMyStore(t) // empty, closed by its own t.Cleanup
//		})
//	}
//
// # What it checks
//
// Run drives a real taskqueue.Runner over stores made by newStore and checks
// every behaviour a store takes part in: submit and get, the status life
// cycle, results and progress, retries with backoff, permanent errors,
// panics and timeouts as failed attempts, delays, unique keys, cancellation
// of pending, running and finished tasks, keyset-paged listing with filters,
// retention, shutdown with pending and interrupted tasks, Wait and
// Subscribe, bounded error texts, metadata handed whole to every claim
// and attempt, concurrent workers, stores shared by
// Runners of different kinds and of the same kind (each task claimed once,
// a unique key held once across Runners submitting at the same moment),
// and the store contract itself (stale attempts are ErrLeaseLost, unknown
// ids ErrNotFound, releases refund the attempt, cancel requests win over
// outcomes, a Cancel racing a Finish agrees with it, a delayed task wakes
// a Claim of its kind, returned Infos share no bytes with the store).
//
// # Time
//
// Each behaviour runs inside a testing/synctest bubble, so backoff, delays,
// timeouts and retention are checked to the nanosecond without sleeping.
// newStore is called inside the bubble, with the bubble's *testing.T: the
// store must read time with time.Now (so the bubble's clock applies), and
// whatever it starts must end by its t.Cleanup.
//
// # Durable stores
//
// A store over a real database runs the same suite, in the same bubbles,
// with every check kept. A goroutine blocked in network I/O is not durably
// blocked, so the bubble's clock stands still while a query is on its way
// and synctest.Wait waits for it: a round trip takes no time on the
// bubble's clock, and the exact times the suite checks hold. Three things
// are asked of such a store:
//
//   - it takes every time it writes or compares from time.Now and passes
//     it to the database as a parameter, never from the database's own
//     clock (Postgres's now() is not the bubble's);
//   - no goroutine of its own waits on the network for long, such as a
//     LISTEN connection, or the bubble's clock never moves: turn such a
//     thing off for the suite, and let the store wake its own Claims for
//     what goes through it (the Runners of a behaviour share one store);
//   - its leases, if any, outlast the suite's sleeps (hours) while the
//     suite holds claims without heartbeats.
//
// The bubble's clock starts at midnight UTC on 1 January 2000 in every
// behaviour, so newStore must give each behaviour an empty store of its
// own (a fresh schema, say). Before Run, skip the test outside the bubble
// when the database is missing: a t.Skip inside a bubble reads as a pass.
// taskqueue/pgstore's TestConformance is the worked example.
package taskqueuetest
