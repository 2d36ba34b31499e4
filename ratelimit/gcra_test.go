package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

func TestLimitValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lim  ratelimit.Limit
		ok   bool
	}{
		{"per-second limit is valid", ratelimit.PerSecond(10), true},
		{"per-day limit is valid", ratelimit.PerDay(1000), true},
		{"zero limit is invalid", ratelimit.Limit{}, false},
		{"zero rate is invalid", ratelimit.PerMinute(0), false},
		{"negative rate is invalid", ratelimit.PerHour(-1), false},
		{"zero period is invalid", ratelimit.Limit{Rate: 1, Burst: 1}, false},
		{"negative period is invalid", ratelimit.Limit{Rate: 1, Period: -time.Second, Burst: 1}, false},
		{"zero burst is invalid", ratelimit.PerSecond(5).WithBurst(0), false},
		{"negative burst is invalid", ratelimit.PerSecond(5).WithBurst(-3), false},
		{"sub-microsecond interval is invalid", ratelimit.Limit{Rate: 2_000_000, Period: time.Second, Burst: 1}, false},
		{"period over a year is invalid", ratelimit.Limit{Rate: 1, Period: 400 * 24 * time.Hour, Burst: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.lim.Validate()
			_, nerr := ratelimit.NewLimit(tc.lim.Rate, tc.lim.Period, tc.lim.Burst)
			_, gerr := ratelimit.NewGCRA(tc.lim, ratelimit.Options{})
			if tc.ok {
				require.NoError(t, err)
				require.NoError(t, nerr)
				require.NoError(t, gerr)
				return
			}
			require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
			require.ErrorIs(t, nerr, ratelimit.ErrInvalidLimit)
			require.ErrorIs(t, gerr, ratelimit.ErrInvalidLimit)
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		o    ratelimit.Options
		ok   bool
	}{
		{"zero options are the defaults", ratelimit.Options{}, true},
		{"explicit shards and cap", ratelimit.Options{MaxKeys: 64, Shards: 4}, true},
		{"negative MaxKeys is an error", ratelimit.Options{MaxKeys: -1}, false},
		{"negative Shards is an error", ratelimit.Options{Shards: -2}, false},
		{"shards not a power of two is an error", ratelimit.Options{Shards: 3}, false},
		{"more shards than keys is an error", ratelimit.Options{MaxKeys: 2, Shards: 4}, false},
		{"too many shards is an error", ratelimit.Options{Shards: 1 << 17}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ratelimit.NewGCRA(ratelimit.PerSecond(1), tc.o)
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				require.False(t, errors.Is(err, ratelimit.ErrInvalidLimit))
			}
		})
	}
}

func TestGCRAResults(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// 10 per second, burst 3: interval 100ms, tau 300ms.
		g, err := ratelimit.NewGCRA(ratelimit.PerSecond(10).WithBurst(3), ratelimit.Options{})
		require.NoError(t, err)
		ctx := context.Background()
		ms := time.Millisecond

		res, err := g.AllowN(ctx, "k", 2)
		require.NoError(t, err)
		require.Equal(t, ratelimit.Result{Allowed: true, Limit: g.Limit(), Remaining: 1, ResetAfter: 200 * ms}, res)

		res, err = g.AllowN(ctx, "k", 2)
		require.NoError(t, err)
		require.Equal(t, ratelimit.Result{Limit: g.Limit(), Remaining: 1, RetryAfter: 100 * ms, ResetAfter: 200 * ms}, res)

		time.Sleep(30 * ms)
		res, err = g.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		// TAT was 200ms; now 30ms; new TAT 300ms; remaining ⌊(300-270)/100⌋ = 0.
		require.Equal(t, ratelimit.Result{Allowed: true, Limit: g.Limit(), Remaining: 0, ResetAfter: 270 * ms}, res)

		res, err = g.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.Equal(t, ratelimit.Result{Limit: g.Limit(), Remaining: 0, RetryAfter: 70 * ms, ResetAfter: 270 * ms}, res)
	})
}

func TestGCRAPeriodNotDivisibleRoundsIntervalUp(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// 3 per second: the interval is ⌈1s/3⌉ = 333,333,334ns.
		lim := ratelimit.PerSecond(3).WithBurst(1)
		require.Equal(t, 333_333_334*time.Nanosecond, lim.Interval())
		g, err := ratelimit.NewGCRA(lim, ratelimit.Options{})
		require.NoError(t, err)
		_, err = g.AllowN(context.Background(), "k", 1)
		require.NoError(t, err)
		res, err := g.AllowN(context.Background(), "k", 1)
		require.NoError(t, err)
		require.Equal(t, 333_333_334*time.Nanosecond, res.RetryAfter)
	})
}

// TestGCRAExactUnderContention: 64 goroutines hammer one key for 10 s of
// synthetic time with a limit of 100 per 10 s (burst 100). A denied
// goroutine sleeps exactly its RetryAfter, so demand is waiting at every
// instant a permit frees up, and the count admitted must be exactly
// burst + ⌊elapsed / interval⌋ = 100 + ⌊10s / 100ms⌋ = 200.
func TestGCRAExactUnderContention(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.Limit{Rate: 100, Period: 10 * time.Second, Burst: 100}
		g, err := ratelimit.NewGCRA(lim, ratelimit.Options{})
		require.NoError(t, err)
		const elapsed = 10 * time.Second
		admitted := hammer(t, g, "hot", 64, elapsed)
		require.Len(t, admitted, lim.Burst+int(elapsed/lim.Interval()))
	})
}

// hammer runs workers goroutines that call AllowN(key, 1) from now until
// elapsed has passed, each sleeping RetryAfter when denied, and returns the
// synthetic times of the admitted requests, measured from the start.
func hammer(t *testing.T, l ratelimit.Limiter, key string, workers int, elapsed time.Duration) []time.Duration {
	t.Helper()
	start := time.Now()
	var mu sync.Mutex
	var admitted []time.Duration
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				at := time.Since(start)
				if at > elapsed {
					return
				}
				res, err := l.AllowN(context.Background(), key, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					mu.Lock()
					admitted = append(admitted, at)
					mu.Unlock()
					continue
				}
				time.Sleep(res.RetryAfter)
			}
		})
	}
	wg.Wait()
	return admitted
}

func TestGCRAMaxKeysIsAHardCap(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g, err := ratelimit.NewGCRA(ratelimit.PerHour(10), ratelimit.Options{MaxKeys: 64, Shards: 4})
		require.NoError(t, err)
		for i := range 10_000 {
			_, err := g.AllowN(context.Background(), keyOf(i), 1)
			require.NoError(t, err)
			require.LessOrEqual(t, g.Len(), 64)
		}
		require.Equal(t, 64, g.Len())
	})
}

func TestGCRAIdleKeysAreDroppedLazily(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g, err := ratelimit.NewGCRA(ratelimit.PerSecond(10), ratelimit.Options{MaxKeys: 1024, Shards: 1})
		require.NoError(t, err)
		for i := range 500 {
			_, err := g.AllowN(context.Background(), keyOf(i), 1)
			require.NoError(t, err)
		}
		require.Equal(t, 500, g.Len())
		// After a Period and the 100ms the keys ran ahead, every key has been
		// idle a full Period: each new key then drops up to two of them,
		// so the table shrinks while in use.
		time.Sleep(1100 * time.Millisecond)
		for i := range 500 {
			_, err := g.AllowN(context.Background(), keyOf(1000+i), 1)
			require.NoError(t, err)
		}
		require.Equal(t, 500, g.Len())
		time.Sleep(1100 * time.Millisecond)
		for i := range 10 {
			_, err := g.AllowN(context.Background(), keyOf(5000+i), 1)
			require.NoError(t, err)
		}
		require.Equal(t, 500-10, g.Len())
	})
}

func keyOf(i int) string {
	const digits = "0123456789abcdef"
	b := []byte("key-")
	for {
		b = append(b, digits[i&15])
		i >>= 4
		if i == 0 {
			return string(b)
		}
	}
}

func TestGCRAEvictsLeastRecentlyUsedKey(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		g, err := ratelimit.NewGCRA(ratelimit.PerHour(1), ratelimit.Options{MaxKeys: 4, Shards: 1})
		require.NoError(t, err)
		for _, k := range []string{"a", "b", "c", "d"} {
			res, err := g.AllowN(ctx, k, 1)
			require.NoError(t, err)
			require.True(t, res.Allowed)
		}
		// a is used again, so the fifth key evicts b, the least recently used.
		res, err := g.AllowN(ctx, "a", 1)
		require.NoError(t, err)
		require.False(t, res.Allowed)
		_, err = g.AllowN(ctx, "e", 1)
		require.NoError(t, err)
		require.Equal(t, 4, g.Len())

		res, err = g.AllowN(ctx, "a", 1)
		require.NoError(t, err)
		require.False(t, res.Allowed, "a kept its state")
		res, err = g.AllowN(ctx, "b", 1)
		require.NoError(t, err)
		require.True(t, res.Allowed, "b was evicted and starts afresh")
	})
}

func TestWithFailurePolicyRejectsBadInput(t *testing.T) {
	t.Parallel()
	g, err := ratelimit.NewGCRA(ratelimit.PerMinute(10), ratelimit.Options{})
	require.NoError(t, err)
	small, err := ratelimit.NewGCRA(ratelimit.PerMinute(2), ratelimit.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		store ratelimit.Limiter
		p     ratelimit.FailurePolicy
		o     ratelimit.FailureOptions
	}{
		{"nil store", nil, ratelimit.FailOpen, ratelimit.FailureOptions{}},
		{"negative timeout", g, ratelimit.FailOpen, ratelimit.FailureOptions{Timeout: -1}},
		{"negative failures", g, ratelimit.FailClosed, ratelimit.FailureOptions{Failures: -1}},
		{"negative open time", g, ratelimit.FailClosed, ratelimit.FailureOptions{OpenFor: -time.Second}},
		{"fallback to nil", g, ratelimit.Fallback(nil, 1), ratelimit.FailureOptions{}},
		{"fallback with no replicas", g, ratelimit.Fallback(g, 0), ratelimit.FailureOptions{}},
		{"fallback burst below replicas", g, ratelimit.Fallback(small, 3), ratelimit.FailureOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ratelimit.WithFailurePolicy(tc.store, tc.p, tc.o)
			require.Error(t, err)
		})
	}
	// A healthy store decides; bad calls stay errors.
	guarded, err := ratelimit.WithFailurePolicy(g, ratelimit.FailOpen, ratelimit.FailureOptions{})
	require.NoError(t, err)
	res, err := guarded.AllowN(context.Background(), "k", 1)
	require.NoError(t, err)
	require.Equal(t, 9, res.Remaining)
	_, err = guarded.AllowN(context.Background(), "k", 11)
	require.ErrorIs(t, err, ratelimit.ErrCostExceedsBurst)
	require.Equal(t, "fell back", ratelimit.FellBack.String())
}
