package redisrate_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/ratelimittest"
	"github.com/asynckit/asynckit/ratelimit/redisrate"
)

// TestFailurePolicyThroughAFaultyLink puts a TCP proxy between the client
// and the real Redis, then cuts the link and slows it mid-run. Each policy
// must answer as documented within the timeout, the breaker must stop
// calling Redis after three failures and probe it again after OpenFor, and
// decisions must come from Redis again once it is back.
func TestFailurePolicyThroughAFaultyLink(t *testing.T) {
	t.Parallel()
	const (
		timeout = 250 * time.Millisecond
		openFor = 300 * time.Millisecond
		// slack covers scheduling on a busy machine; the point is that a
		// failed call ends near the timeout, not after go-redis's own
		// seconds-long dial and read timeouts.
		slack = 250 * time.Millisecond
	)
	for _, tc := range []struct {
		name   string
		policy func(t *testing.T) ratelimit.FailurePolicy
		// check is called with each decision taken while Redis is down.
		check func(t *testing.T, i int, res ratelimit.Result, ev ratelimit.Event)
	}{
		{"fail-open admits", func(*testing.T) ratelimit.FailurePolicy { return ratelimit.FailOpen },
			func(t *testing.T, _ int, res ratelimit.Result, ev ratelimit.Event) {
				require.True(t, res.Allowed)
				require.Equal(t, ratelimit.FailedOpen, ev.Outcome)
			}},
		{"fail-closed denies", func(*testing.T) ratelimit.FailurePolicy { return ratelimit.FailClosed },
			func(t *testing.T, _ int, res ratelimit.Result, ev ratelimit.Event) {
				require.False(t, res.Allowed)
				require.Positive(t, res.RetryAfter)
				require.Equal(t, ratelimit.FailedClosed, ev.Outcome)
			}},
		{"fallback uses the local limiter's share", func(t *testing.T) ratelimit.FailurePolicy {
			// The whole limit is 4 a minute over 2 replicas: 2 each locally.
			local, err := ratelimit.NewGCRA(ratelimit.PerMinute(4), ratelimit.Options{})
			require.NoError(t, err)
			return ratelimit.Fallback(local, 2)
		}, func(t *testing.T, i int, res ratelimit.Result, ev ratelimit.Event) {
			require.Equal(t, i < 2, res.Allowed, "decision %d", i)
			require.Equal(t, ratelimit.FellBack, ev.Outcome)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, prefix := testenv.Redis(t)
			c, proxy := testenv.RedisThroughProxy(t, base, func(o *redis.Options) {
				o.MaxRetries, o.DialTimeout, o.ContextTimeoutEnabled = -1, time.Second, true
			})

			store, err := redisrate.NewGCRA(c, ratelimit.PerMinute(1000), redisrate.Options{Prefix: prefix})
			require.NoError(t, err)
			rec := &ratelimittest.Recorder{}
			g, err := ratelimit.WithFailurePolicy(store, tc.policy(t), ratelimit.FailureOptions{
				Timeout: timeout, Failures: 3, OpenFor: openFor, Observe: rec.Observe,
			})
			require.NoError(t, err)
			ctx := context.Background()
			decide := func() (ratelimit.Result, ratelimit.Event, time.Duration) {
				start := time.Now()
				res, err := g.AllowN(ctx, "k", 1)
				require.NoError(t, err)
				return res, rec.Last(), time.Since(start)
			}

			// Connect and load the script outside the guard, so that a slow
			// first connection on a busy machine is not taken for a failure.
			_, err = store.AllowN(ctx, "warm", 1)
			require.NoError(t, err)

			// Healthy: Redis decides.
			for range 3 {
				res, ev, _ := decide()
				require.True(t, res.Allowed)
				require.Equal(t, ratelimit.Decided, ev.Outcome)
			}

			// Cut: three calls try Redis and fail, then the breaker opens
			// and the policy answers without trying.
			proxy.Cut()
			for i := range 6 {
				res, ev, took := decide()
				require.Less(t, took, timeout+slack, "decision %d took %v", i, took)
				tc.check(t, i, res, ev)
				if i < 3 {
					require.Error(t, ev.Err, "decision %d should have tried Redis", i)
				} else {
					require.NoError(t, ev.Err, "decision %d should not have tried Redis", i)
				}
				require.Equal(t, i >= 2, ev.BreakerOpen, "decision %d", i)
			}

			// Back: after OpenFor one probe reaches Redis and closes the breaker.
			proxy.Restore()
			time.Sleep(openFor)
			for range 3 {
				res, ev, _ := decide()
				require.True(t, res.Allowed)
				require.Equal(t, ratelimit.Decided, ev.Outcome)
				require.False(t, ev.BreakerOpen)
			}

			// Slow: a reply later than the timeout is a failure too.
			require.NoError(t, proxy.SetDelay(3*timeout))
			res, ev, took := decide()
			require.Less(t, took, timeout+slack)
			require.True(t, errors.Is(ev.Err, context.DeadlineExceeded) || errors.Is(ev.Err, os.ErrDeadlineExceeded),
				"a timeout, got %v", ev.Err)
			tc.check(t, 5, res, ev)
			require.NoError(t, proxy.SetDelay(0))
		})
	}
}

// TestBreakerStopsHammeringADownRedis: 16 callers make 400 decisions while
// Redis is cut off. The breaker must keep almost all of them off Redis:
// only calls already in flight when it opened, and one probe per OpenFor,
// may try it.
func TestBreakerStopsHammeringADownRedis(t *testing.T) {
	t.Parallel()
	const openFor = 100 * time.Millisecond
	base, prefix := testenv.Redis(t)
	c, proxy := testenv.RedisThroughProxy(t, base, func(o *redis.Options) {
		o.MaxRetries, o.ContextTimeoutEnabled = -1, true
	})
	store, err := redisrate.NewGCRA(c, ratelimit.PerSecond(100), redisrate.Options{Prefix: prefix})
	require.NoError(t, err)
	rec := &ratelimittest.Recorder{}
	g, err := ratelimit.WithFailurePolicy(store, ratelimit.FailClosed, ratelimit.FailureOptions{
		Timeout: 50 * time.Millisecond, Failures: 3, OpenFor: openFor, Observe: rec.Observe,
	})
	require.NoError(t, err)

	proxy.Cut()
	start := time.Now()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 25 {
				res, err := g.AllowN(context.Background(), "k", 1)
				if err != nil || res.Allowed {
					t.Errorf("AllowN during the outage: %+v, %v", res, err)
					return
				}
				time.Sleep(20 * time.Millisecond) // spans several OpenFor periods
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	tried := 0
	for _, ev := range rec.Events() {
		if ev.Err != nil {
			tried++
		}
	}
	probes := int(elapsed/openFor) + 1
	t.Logf("%d decisions in %v; %d tried Redis (at most 16 + %d probes)", len(rec.Events()), elapsed, tried, probes)
	require.Len(t, rec.Events(), 400)
	require.LessOrEqual(t, tried, 16+probes)
}
