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
// Subscribe, bounded error texts, concurrent workers, stores shared by
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
package taskqueuetest
