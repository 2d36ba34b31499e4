package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/ratelimittest"
)

// flakyStore is a Limiter standing in for a remote store whose health the
// test switches: healthy, failing with errStoreDown, or hanging until the
// call's ctx ends. It counts the calls that reach it. The store-backed
// behaviour against a real Redis is proved in redisrate; these tests pin
// the breaker's states and timings exactly, under synctest.
type flakyStore struct {
	lim   ratelimit.Limit
	mode  atomic.Int32 // storeUp, storeDown or storeHung
	calls atomic.Int64
}

const (
	storeUp int32 = iota
	storeDown
	storeHung
)

var errStoreDown = errors.New("store down")

func (s *flakyStore) Limit() ratelimit.Limit { return s.lim }

func (s *flakyStore) AllowN(ctx context.Context, key string, n int) (ratelimit.Result, error) {
	if err := ratelimit.CheckCall(ctx, s.lim, key, n); err != nil {
		return ratelimit.Result{}, err
	}
	s.calls.Add(1)
	switch s.mode.Load() {
	case storeDown:
		return ratelimit.Result{}, errStoreDown
	case storeHung:
		<-ctx.Done()
		return ratelimit.Result{}, ctx.Err()
	}
	return ratelimit.Result{Allowed: true, Limit: s.lim, Remaining: 7}, nil
}

func newGuarded(t *testing.T, p ratelimit.FailurePolicy) (*ratelimit.Guarded, *flakyStore, *ratelimittest.Recorder) {
	t.Helper()
	store := &flakyStore{lim: ratelimit.Limit{Rate: 10, Period: time.Minute, Burst: 10}}
	ev := &ratelimittest.Recorder{}
	g, err := ratelimit.WithFailurePolicy(store, p, ratelimit.FailureOptions{
		Timeout: 50 * time.Millisecond, Failures: 3, OpenFor: 2 * time.Second, Observe: ev.Observe,
	})
	require.NoError(t, err)
	return g, store, ev
}

// TestBreakerStates walks the circuit breaker through every transition:
// closed while failures stay below the threshold (a success resets the
// count), open at the threshold (the store is not called and FailClosed's
// RetryAfter counts down to the probe), one probe after OpenFor, reopened
// by a failed probe for another OpenFor, and closed by a successful one.
func TestBreakerStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, store, ev := newGuarded(t, ratelimit.FailClosed)
		ctx := context.Background()
		allow := func() ratelimit.Result {
			t.Helper()
			res, err := g.AllowN(ctx, "k", 1)
			require.NoError(t, err)
			return res
		}

		require.True(t, allow().Allowed)
		require.Equal(t, ratelimit.Decided, ev.Last().Outcome)

		// Two failures, then a success: the count starts again.
		store.mode.Store(storeDown)
		for range 2 {
			res := allow()
			require.False(t, res.Allowed)
			require.Equal(t, 50*time.Millisecond, res.RetryAfter, "closed: retry after the timeout")
			require.ErrorIs(t, ev.Last().Err, errStoreDown)
			require.False(t, ev.Last().BreakerOpen)
		}
		store.mode.Store(storeUp)
		require.True(t, allow().Allowed)
		store.mode.Store(storeDown)
		for range 2 {
			allow()
			require.False(t, ev.Last().BreakerOpen, "two failures after a success do not open it")
		}

		// The third failure in a row opens it.
		allow()
		require.True(t, ev.Last().BreakerOpen)
		require.Equal(t, int64(7), store.calls.Load())

		// Open: answered at once, without the store.
		time.Sleep(500 * time.Millisecond)
		res := allow()
		require.False(t, res.Allowed)
		require.Equal(t, 1500*time.Millisecond, res.RetryAfter, "open: retry when the probe is due")
		require.NoError(t, ev.Last().Err, "the store was not tried")
		require.Equal(t, int64(7), store.calls.Load())

		// At OpenFor one call probes; it fails and reopens for OpenFor.
		time.Sleep(1500 * time.Millisecond)
		allow()
		require.Equal(t, int64(8), store.calls.Load())
		require.ErrorIs(t, ev.Last().Err, errStoreDown)
		require.True(t, ev.Last().BreakerOpen)
		time.Sleep(2*time.Second - time.Nanosecond)
		allow()
		require.Equal(t, int64(8), store.calls.Load(), "reopened for a whole OpenFor")

		// The next probe succeeds and closes it.
		store.mode.Store(storeUp)
		time.Sleep(time.Nanosecond)
		require.True(t, allow().Allowed)
		require.Equal(t, int64(9), store.calls.Load())
		require.Equal(t, ratelimit.Decided, ev.Last().Outcome)
		require.False(t, ev.Last().BreakerOpen)
		require.True(t, allow().Allowed)
		require.Equal(t, int64(10), store.calls.Load())
	})
}

// TestBreakerProbesOnce: when the breaker's open time is over, of many
// concurrent callers exactly one reaches the store; the rest are answered
// by the policy while the probe is in flight.
func TestBreakerProbesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, store, _ := newGuarded(t, ratelimit.FailOpen)
		ctx := context.Background()
		store.mode.Store(storeDown)
		for range 3 {
			_, err := g.AllowN(ctx, "k", 1)
			require.NoError(t, err)
		}
		time.Sleep(2 * time.Second)
		store.mode.Store(storeHung) // the probe hangs until its timeout
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				res, err := g.AllowN(ctx, "k", 1)
				if err != nil || !res.Allowed {
					t.Errorf("fail-open answered %+v, %v", res, err)
				}
			})
		}
		wg.Wait()
		require.Equal(t, int64(4), store.calls.Load(), "3 failures and one probe")
	})
}

// TestGuardedTimeout: a store slower than Timeout is a failure exactly at
// the timeout, and the policy answers.
func TestGuardedTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, store, ev := newGuarded(t, ratelimit.FailOpen)
		store.mode.Store(storeHung)
		start := time.Now()
		res, err := g.AllowN(context.Background(), "k", 2)
		require.NoError(t, err)
		require.Equal(t, 50*time.Millisecond, time.Since(start))
		require.True(t, res.Allowed)
		require.Equal(t, 8, res.Remaining, "fail-open reports the burst less n")
		require.Equal(t, ratelimit.FailedOpen, ev.Last().Outcome)
		require.ErrorIs(t, ev.Last().Err, context.DeadlineExceeded)
	})
}

// TestGuardedCallerErrorsAreNotFailures: the caller's own ended ctx and
// bad calls are errors for the caller and never count toward the breaker.
func TestGuardedCallerErrorsAreNotFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, store, _ := newGuarded(t, ratelimit.FailClosed)
		store.mode.Store(storeHung)
		for range 5 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			_, err := g.AllowN(ctx, "k", 1)
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded)
			_, err = g.AllowN(context.Background(), "k", 11)
			require.ErrorIs(t, err, ratelimit.ErrCostExceedsBurst)
			_, err = g.AllowN(context.Background(), "", 1)
			require.ErrorIs(t, err, ratelimit.ErrEmptyKey)
		}
		store.mode.Store(storeUp)
		res, err := g.AllowN(context.Background(), "k", 1)
		require.NoError(t, err)
		require.True(t, res.Allowed, "the breaker is still closed")
		require.Equal(t, int64(6), store.calls.Load())
	})
}

// TestFallbackTakesItsShare: with Fallback(local, 4), each request costs 4
// local units, so a local limit of 40 per minute admits 10 here, and
// Remaining is reported in the whole limit's units. A request that cannot
// fit this instance's share is denied, not an error.
func TestFallbackTakesItsShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local, err := ratelimit.NewGCRA(ratelimit.Limit{Rate: 40, Period: time.Minute, Burst: 40}, ratelimit.Options{})
		require.NoError(t, err)
		g, store, ev := newGuarded(t, ratelimit.Fallback(local, 4))
		store.mode.Store(storeDown)
		ctx := context.Background()
		admitted := 0
		for i := range 12 {
			res, err := g.AllowN(ctx, "k", 1)
			require.NoError(t, err)
			require.Equal(t, ratelimit.FellBack, ev.Last().Outcome)
			if res.Allowed {
				admitted++
				require.Equal(t, 9-i, res.Remaining)
			}
		}
		require.Equal(t, 10, admitted)

		// A local limit of 20 fits a request of 5 (20 units) but not of 6.
		small, err := ratelimit.NewGCRA(ratelimit.Limit{Rate: 20, Period: time.Minute, Burst: 20}, ratelimit.Options{})
		require.NoError(t, err)
		g, store, ev = newGuarded(t, ratelimit.Fallback(small, 4))
		store.mode.Store(storeDown)
		res, err := g.AllowN(ctx, "k", 6)
		require.NoError(t, err, "6 is within the store's burst of 10")
		require.False(t, res.Allowed)
		require.Equal(t, 50*time.Millisecond, res.RetryAfter)
		require.Equal(t, ratelimit.FellBack, ev.Last().Outcome)
		res, err = g.AllowN(ctx, "k", 5)
		require.NoError(t, err)
		require.True(t, res.Allowed, "the denied request spent nothing")
		require.Equal(t, 0, res.Remaining)
	})
}

// TestBreakerHalfOpen pins what happens while the probe is out, to the
// nanosecond: the breaker opens at 3 failures, and 2s later (OpenFor) one
// call probes the store, whose calls time out after 50ms.
func TestBreakerHalfOpen(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, g *ratelimit.Guarded, store *flakyStore, ev *ratelimittest.Recorder)
	}{
		{"callers during the probe get the policy's answer at once, retrying after the timeout", func(t *testing.T, g *ratelimit.Guarded, store *flakyStore, ev *ratelimittest.Recorder) {
			store.mode.Store(storeHung)
			probed := make(chan struct{})
			go func() {
				defer close(probed)
				_, _ = g.AllowN(context.Background(), "k", 1)
			}()
			synctest.Wait() // the probe is in the store
			require.Equal(t, int64(4), store.calls.Load())
			start := time.Now()
			res, err := g.AllowN(context.Background(), "k", 1)
			require.NoError(t, err)
			require.Zero(t, time.Since(start), "answered without waiting for the probe")
			require.False(t, res.Allowed)
			require.Equal(t, 50*time.Millisecond, res.RetryAfter)
			require.True(t, ev.Last().BreakerOpen)
			require.NoError(t, ev.Last().Err, "the store was not tried")
			require.Equal(t, int64(4), store.calls.Load())
			<-probed
		}},
		{"a probe that times out reopens for OpenFor from its failure", func(t *testing.T, g *ratelimit.Guarded, store *flakyStore, ev *ratelimittest.Recorder) {
			store.mode.Store(storeHung)
			start := time.Now()
			res, err := g.AllowN(context.Background(), "k", 1)
			require.NoError(t, err)
			require.Equal(t, 50*time.Millisecond, time.Since(start))
			require.False(t, res.Allowed)
			require.Equal(t, 2*time.Second, res.RetryAfter, "the next probe is OpenFor after this one failed")
			require.ErrorIs(t, ev.Last().Err, context.DeadlineExceeded)
			require.True(t, ev.Last().BreakerOpen)
			store.mode.Store(storeUp)
			time.Sleep(2*time.Second - time.Nanosecond)
			res, err = g.AllowN(context.Background(), "k", 1)
			require.NoError(t, err)
			require.False(t, res.Allowed)
			require.Equal(t, 50*time.Millisecond, res.RetryAfter, "1ns to the probe, but never sooner than the timeout")
			require.Equal(t, int64(4), store.calls.Load())
			time.Sleep(time.Nanosecond)
			res, err = g.AllowN(context.Background(), "k", 1)
			require.NoError(t, err)
			require.True(t, res.Allowed, "the second probe succeeds and closes the breaker")
			require.False(t, ev.Last().BreakerOpen)
			require.Equal(t, int64(5), store.calls.Load())
		}},
		{"a probe whose caller gives up leaves the breaker open and lets the next call probe", func(t *testing.T, g *ratelimit.Guarded, store *flakyStore, ev *ratelimittest.Recorder) {
			store.mode.Store(storeHung)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
			_, err := g.AllowN(ctx, "k", 1)
			cancel()
			require.ErrorIs(t, err, context.DeadlineExceeded, "the caller's own deadline is its error")
			require.Equal(t, int64(4), store.calls.Load())
			store.mode.Store(storeUp)
			res, err := g.AllowN(context.Background(), "k", 1)
			require.NoError(t, err)
			require.True(t, res.Allowed, "the next call probes at once and closes the breaker")
			require.Equal(t, ratelimit.Decided, ev.Last().Outcome)
			require.False(t, ev.Last().BreakerOpen)
			require.Equal(t, int64(5), store.calls.Load())
		}},
		{"a successful probe closes the breaker and the count of failures starts again", func(t *testing.T, g *ratelimit.Guarded, store *flakyStore, ev *ratelimittest.Recorder) {
			res, err := g.AllowN(context.Background(), "k", 1)
			require.NoError(t, err)
			require.True(t, res.Allowed)
			store.mode.Store(storeDown)
			for i := range 3 {
				_, err := g.AllowN(context.Background(), "k", 1)
				require.NoError(t, err)
				require.Equal(t, i == 2, ev.Last().BreakerOpen, "failure %d after the probe", i+1)
			}
			require.Equal(t, int64(7), store.calls.Load())
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g, store, ev := newGuarded(t, ratelimit.FailClosed)
				store.mode.Store(storeDown)
				for range 3 {
					_, err := g.AllowN(context.Background(), "k", 1)
					require.NoError(t, err)
				}
				require.True(t, ev.Last().BreakerOpen)
				store.mode.Store(storeUp)
				time.Sleep(2 * time.Second)
				c.run(t, g, store, ev)
			})
		})
	}
}
