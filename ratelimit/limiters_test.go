package ratelimit_test

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

func TestWindowsRejectABurstApartFromTheRate(t *testing.T) {
	t.Parallel()
	lim := ratelimit.PerSecond(10).WithBurst(20)
	_, err := ratelimit.NewSlidingLog(lim, ratelimit.Options{})
	require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
	_, err = ratelimit.NewSlidingWindow(lim, ratelimit.Options{})
	require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
	_, err = ratelimit.NewConcurrency(0, time.Second, ratelimit.Options{})
	require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
	_, err = ratelimit.NewConcurrency(3, 0, ratelimit.Options{})
	require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
	_, err = ratelimit.NewTokenBucket(ratelimit.Limit{}, ratelimit.Options{})
	require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
}

// TestSlidingLogExactUnderContention: 64 goroutines hammer one key for 25 s
// of synthetic time under 100 per 10 s, each sleeping its RetryAfter when
// denied. The log must admit exactly 100 in every 10 s span that starts at
// an admission, and 100 × 3 in total (the windows that begin at 0, 10 and
// 20 s).
func TestSlidingLogExactUnderContention(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.PerMinute(100)
		lim.Period = 10 * time.Second
		l, err := ratelimit.NewSlidingLog(lim, ratelimit.Options{})
		require.NoError(t, err)
		admitted := hammer(t, l, "hot", 64, 25*time.Second)
		require.Len(t, admitted, 300)
		sort.Slice(admitted, func(i, j int) bool { return admitted[i] < admitted[j] })
		most := 0
		for i, at := range admitted {
			j := sort.Search(len(admitted), func(j int) bool { return admitted[j] >= at+lim.Period })
			most = max(most, j-i)
		}
		require.Equal(t, 100, most, "most admissions in any 10 s span")
	})
}

func TestSlidingWindowWeighsThePreviousWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		w, err := ratelimit.NewSlidingWindow(ratelimit.PerSecond(10), ratelimit.Options{})
		require.NoError(t, err)
		for range 10 {
			res, err := w.AllowN(ctx, "k", 1)
			require.NoError(t, err)
			require.True(t, res.Allowed)
		}
		// 1.5 s in: the previous window's 10 count half, so 5 more fit.
		time.Sleep(1500 * time.Millisecond)
		admitted := 0
		for range 10 {
			res, err := w.AllowN(ctx, "k", 1)
			require.NoError(t, err)
			if res.Allowed {
				admitted++
			}
		}
		require.Equal(t, 5, admitted)
		// Denied now with curr = 5, prev = 10 weighted 5: the next unit fits
		// once prev's weight drops to 4, at 1.6 s, 100ms from now.
		res, err := w.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.Equal(t, ratelimit.Result{Limit: w.Limit(), Remaining: 0, RetryAfter: 100 * time.Millisecond, ResetAfter: 1500 * time.Millisecond}, res)
	})
}

// TestSlidingWindowNeverExceedsRatePerFixedWindow: under 64 goroutines
// for 5 s, no fixed window of the key holds more than Rate admissions, and
// the total is exactly what the weighted estimate allows.
func TestSlidingWindowNeverExceedsRatePerFixedWindow(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.PerSecond(50)
		w, err := ratelimit.NewSlidingWindow(lim, ratelimit.Options{})
		require.NoError(t, err)
		admitted := hammer(t, w, "hot", 64, 5*time.Second)
		perWindow := map[time.Duration]int{}
		for _, at := range admitted {
			perWindow[at/time.Second]++
		}
		for win, n := range perWindow {
			require.LessOrEqual(t, n, 50, "window %d", win)
		}
		// The estimate lets through about Rate per Period in the steady state.
		// Window 0 admits 50 at once. In each later window prev is 50 or 49
		// and the k-th unit fits once ⌈prev×(1−e)⌉ ≤ 50−k, which happens
		// for k = 1…49 only (k = 50 would need e = 1), so windows 1–4 admit
		// 49 each, and the request at exactly 5 s opens window 5 with one:
		// 50 + 4×49 + 1.
		require.Len(t, admitted, 50+4*49+1)
	})
}

func TestTokenBucketWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		timeout time.Duration // 0: none
		cancel  time.Duration // 0: never
		wantErr error
		waited  time.Duration
	}{
		{"waits exactly until a token is due", 0, 0, nil, 100 * time.Millisecond},
		{"a deadline too soon fails at once", 50 * time.Millisecond, 0, ratelimit.ErrWouldExceedDeadline, 0},
		{"cancellation ends the wait and returns the token", 0, 30 * time.Millisecond, context.Canceled, 30 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				b, err := ratelimit.NewTokenBucket(ratelimit.PerSecond(10).WithBurst(1), ratelimit.Options{})
				require.NoError(t, err)
				ctx := context.Background()
				require.NoError(t, b.Wait(ctx, "k"))
				if tc.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tc.timeout)
					defer cancel()
				}
				if tc.cancel > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithCancel(ctx)
					time.AfterFunc(tc.cancel, cancel)
				}
				start := time.Now()
				err = b.Wait(ctx, "k")
				require.ErrorIs(t, err, tc.wantErr)
				require.Equal(t, tc.waited, time.Since(start))
				if tc.wantErr != nil {
					// The reservation was given back: the token is due
					// 100ms after the first one, not 200ms.
					time.Sleep(100*time.Millisecond - time.Since(start))
					res, err := b.AllowN(context.Background(), "k", 1)
					require.NoError(t, err)
					require.True(t, res.Allowed)
				}
			})
		})
	}
}

func TestTokenBucketReserve(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b, err := ratelimit.NewTokenBucket(ratelimit.PerSecond(10).WithBurst(2), ratelimit.Options{})
		require.NoError(t, err)
		r, err := b.Reserve(context.Background(), "k", 2)
		require.NoError(t, err)
		require.Zero(t, r.Delay())
		r, err = b.Reserve(context.Background(), "k", 1)
		require.NoError(t, err)
		require.Equal(t, 100*time.Millisecond, r.Delay())
		_, err = b.Reserve(context.Background(), "k", 3)
		require.ErrorIs(t, err, ratelimit.ErrCostExceedsBurst)
	})
}

func TestWaitWorksWithAnyLimiter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g, err := ratelimit.NewGCRA(ratelimit.PerSecond(4).WithBurst(1), ratelimit.Options{})
		require.NoError(t, err)
		ctx := context.Background()
		start := time.Now()
		for range 3 {
			res, err := ratelimit.Wait(ctx, g, "k", 1)
			require.NoError(t, err)
			require.True(t, res.Allowed)
		}
		require.Equal(t, 500*time.Millisecond, time.Since(start))

		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err = ratelimit.Wait(short, g, "k", 1)
		require.ErrorIs(t, err, ratelimit.ErrWouldExceedDeadline)

		canceled, cancel2 := context.WithCancel(ctx)
		time.AfterFunc(10*time.Millisecond, cancel2)
		_, err = ratelimit.Wait(canceled, g, "k", 1)
		require.ErrorIs(t, err, context.Canceled)

		_, err = ratelimit.Wait(ctx, g, "k", 2)
		require.ErrorIs(t, err, ratelimit.ErrCostExceedsBurst)
	})
}

func TestConcurrencyAcquireAndRelease(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c, err := ratelimit.NewConcurrency(2, time.Minute, ratelimit.Options{})
		require.NoError(t, err)
		r1, res, err := c.Acquire(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, 1, res.Remaining)
		r2, _, err := c.Acquire(ctx, "k")
		require.NoError(t, err)
		noop, res, err := c.Acquire(ctx, "k")
		require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
		require.False(t, res.Allowed)
		require.Equal(t, time.Minute, res.RetryAfter)
		noop()

		r1()
		r1() // a second release frees nothing more
		r3, res, err := c.Acquire(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, 0, res.Remaining)
		_, _, err = c.Acquire(ctx, "k")
		require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
		r2()
		r3()
		_, res, err = c.Acquire(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, 1, res.Remaining)

		_, _, err = c.Acquire(ctx, "")
		require.ErrorIs(t, err, ratelimit.ErrEmptyKey)
	})
}

func TestConcurrencyLeaseExpiresWhenTheHolderDies(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		c, err := ratelimit.NewConcurrency(1, 10*time.Second, ratelimit.Options{})
		require.NoError(t, err)
		dead, _, err := c.Acquire(ctx, "k") // never released in time
		require.NoError(t, err)
		time.Sleep(10*time.Second - time.Nanosecond)
		_, _, err = c.Acquire(ctx, "k")
		require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
		time.Sleep(time.Nanosecond)
		live, _, err := c.Acquire(ctx, "k")
		require.NoError(t, err)
		// The dead holder's late release must not free the live one's slot.
		dead()
		_, _, err = c.Acquire(ctx, "k")
		require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
		live()
		_, _, err = c.Acquire(ctx, "k")
		require.NoError(t, err)
	})
}

func TestConcurrencyNeverExceedsMaxInFlight(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c, err := ratelimit.NewConcurrency(5, time.Minute, ratelimit.Options{})
		require.NoError(t, err)
		var inFlight, peak, done atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for range 20 {
					release, res, err := c.Acquire(context.Background(), "k")
					if err != nil {
						time.Sleep(res.RetryAfter / 1000)
						continue
					}
					n := inFlight.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					time.Sleep(time.Millisecond)
					inFlight.Add(-1)
					done.Add(1)
					release()
				}
			})
		}
		wg.Wait()
		require.Equal(t, int64(5), peak.Load())
		require.Positive(t, done.Load())
	})
}
