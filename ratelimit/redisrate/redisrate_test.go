package redisrate_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/ratelimittest"
	"github.com/asynckit/asynckit/ratelimit/redisrate"
)

type algorithm struct {
	name string
	new  func(c redis.Scripter, lim ratelimit.Limit, o redisrate.Options) (ratelimit.Limiter, error)
}

var algorithms = []algorithm{
	{"GCRA", func(c redis.Scripter, l ratelimit.Limit, o redisrate.Options) (ratelimit.Limiter, error) {
		return redisrate.NewGCRA(c, l, o)
	}},
	{"SlidingLog", func(c redis.Scripter, l ratelimit.Limit, o redisrate.Options) (ratelimit.Limiter, error) {
		return redisrate.NewSlidingLog(c, l, o)
	}},
	{"SlidingWindow", func(c redis.Scripter, l ratelimit.Limit, o redisrate.Options) (ratelimit.Limiter, error) {
		return redisrate.NewSlidingWindow(c, l, o)
	}},
	{"Concurrency", func(c redis.Scripter, l ratelimit.Limit, o redisrate.Options) (ratelimit.Limiter, error) {
		return redisrate.NewConcurrency(c, l.Burst, l.Period, o)
	}},
}

// TestConformance runs the shared suite against every Redis limiter on the
// real Redis named by REDIS_URL, in real (Redis) time.
// Each runs once sending decisions on their own and once batched.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, a := range algorithms {
		for _, batch := range []int{0, 16} {
			t.Run(fmt.Sprintf("%s/batch=%d", a.name, batch), func(t *testing.T) {
				t.Parallel()
				ratelimittest.Run(t, ratelimittest.Config{
					New: func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error) {
						c, prefix := testenv.Redis(t)
						return a.new(c, lim, redisrate.Options{Prefix: prefix, Batch: batch})
					},
				})
			})
		}
	}
}

// scripterOnly hides every method of a client but redis.Scripter's.
type scripterOnly struct{ redis.Scripter }

func TestConstructorsRejectBadInput(t *testing.T) {
	t.Parallel()
	c, prefix := testenv.Redis(t)
	good := ratelimit.PerSecond(10)
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			_, err := a.new(nil, good, redisrate.Options{})
			require.ErrorContains(t, err, "nil Redis client")
			_, err = a.new(c, ratelimit.Limit{}, redisrate.Options{})
			require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
			_, err = a.new(c, good, redisrate.Options{Prefix: prefix + "{x}"})
			require.ErrorContains(t, err, "braces")
		})
	}
	for _, batch := range []int{-1, 1025} {
		_, err := redisrate.NewGCRA(c, good, redisrate.Options{Batch: batch})
		require.ErrorContains(t, err, "Batch")
	}
	_, err := redisrate.NewGCRA(scripterOnly{c}, good, redisrate.Options{Batch: 8})
	require.ErrorContains(t, err, "Pipeline")
	_, err = redisrate.NewGCRA(scripterOnly{c}, good, redisrate.Options{Batch: 1})
	require.NoError(t, err, "a batch of one needs no pipeline")
	_, err = redisrate.NewSlidingLog(c, good.WithBurst(20), redisrate.Options{})
	require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
	_, err = redisrate.NewSlidingWindow(c, ratelimit.PerDay(1_000_000_000), redisrate.Options{})
	require.ErrorIs(t, err, ratelimit.ErrInvalidLimit)
}

// TestEveryKeyHasATTL: after a decision, each algorithm's key exists, is
// hash-tagged, and expires.
func TestEveryKeyHasATTL(t *testing.T) {
	t.Parallel()
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			p := prefix + a.name + ":"
			l, err := a.new(c, ratelimit.PerMinute(10), redisrate.Options{Prefix: p})
			require.NoError(t, err)
			_, err = l.AllowN(ctx, "user-1", 3)
			require.NoError(t, err)
			ttl, err := c.PTTL(ctx, p+"{user-1}").Result()
			require.NoError(t, err)
			require.Positive(t, ttl)
			require.LessOrEqual(t, ttl, 2*time.Minute)
		})
	}
}

func TestConcurrencyAcquireAndRelease(t *testing.T) {
	t.Parallel()
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	cc, err := redisrate.NewConcurrency(c, 2, time.Minute, redisrate.Options{Prefix: prefix})
	require.NoError(t, err)
	r1, res, err := cc.Acquire(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, 1, res.Remaining)
	r2, _, err := cc.Acquire(ctx, "k")
	require.NoError(t, err)
	noop, res, err := cc.Acquire(ctx, "k")
	require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
	require.False(t, res.Allowed)
	require.Greater(t, res.RetryAfter, 59*time.Second)
	require.NoError(t, noop())
	require.NoError(t, r1())
	require.NoError(t, r1()) // a second release frees nothing more
	_, _, err = cc.Acquire(ctx, "k")
	require.NoError(t, err)
	_, _, err = cc.Acquire(ctx, "k")
	require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
	require.NoError(t, r2())
	_, _, err = cc.Acquire(ctx, "")
	require.ErrorIs(t, err, ratelimit.ErrEmptyKey)
}

func TestConcurrencyLeaseExpires(t *testing.T) {
	t.Parallel()
	c, prefix := testenv.Redis(t)
	ctx := context.Background()
	// A lease of a second: long enough that a stall of a busy machine does
	// not let the live holder's lease run out before the checks below.
	cc, err := redisrate.NewConcurrency(c, 1, time.Second, redisrate.Options{Prefix: prefix})
	require.NoError(t, err)
	dead, _, err := cc.Acquire(ctx, "k")
	require.NoError(t, err)
	_, res, err := cc.Acquire(ctx, "k")
	require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
	time.Sleep(res.RetryAfter)
	live, _, err := cc.Acquire(ctx, "k")
	require.NoError(t, err)
	require.NoError(t, dead()) // too late: must not free live's slot
	_, _, err = cc.Acquire(ctx, "k")
	require.ErrorIs(t, err, ratelimit.ErrNotAcquired)
	require.NoError(t, live())
}

func TestWaitAgainstRedis(t *testing.T) {
	t.Parallel()
	c, prefix := testenv.Redis(t)
	l, err := redisrate.NewGCRA(c, ratelimit.PerSecond(10).WithBurst(1), redisrate.Options{Prefix: prefix})
	require.NoError(t, err)
	ctx := context.Background()
	start := time.Now()
	for range 3 {
		require.NoError(t, l.Wait(ctx, "k"))
	}
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, l.Wait(short, "k"), ratelimit.ErrWouldExceedDeadline)
}

// hammerRedis runs 3 clients × 64 goroutines calling AllowN(key, 1) on
// limiters built by newL for d, and returns how many were admitted.
func hammerRedis(t *testing.T, newL func(c redis.Scripter) ratelimit.Limiter, key string, d time.Duration) int64 {
	t.Helper()
	limiters := make([]ratelimit.Limiter, 3)
	for i := range limiters {
		limiters[i] = newL(noRetries(t)) // a separate client: one instance of the service
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 3*64)
	stop := time.Now().Add(d)
	for _, l := range limiters {
		for range 64 {
			wg.Go(func() {
				for time.Now().Before(stop) {
					res, err := l.AllowN(context.Background(), key, 1)
					if err != nil {
						errs <- err
						return
					}
					if res.Allowed {
						admitted.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return admitted.Load()
}

// noRetries returns a client of its own for the test's Redis that never
// retries a command. go-redis retries a command whose connection broke
// (EOF), even after the server ran it: a decision would then be charged
// twice but seen once, and an exact count could not be checked.
func noRetries(t *testing.T) *redis.Client {
	t.Helper()
	base, _ := testenv.Redis(t)
	opts := *base.Options()
	opts.MaxRetries = -1
	c := redis.NewClient(&opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestGCRAExactAcrossInstances: 3 clients × 64 goroutines hammer one key
// under 100 per 10 s (burst 100, interval 100 ms) for 2.05 s, then the test
// drains whatever the herd left until it is denied. GCRA must then have
// admitted exactly burst + ⌊elapsed / interval⌋, where elapsed runs from
// the first admission to the final denial, both measured on Redis's clock
// by reading TIME just before and just after each. The bracket is a
// millisecond or so wide, so the formula gives one number unless an
// interval boundary falls inside a bracket, when the count must be one of
// the two. Unlike a count cut off by the client's clock, this does not
// depend on how the goroutines are scheduled on a busy machine: the first
// admission takes the whole burst, so GCRA banks the slots of any stall
// shorter than Period, and the drain takes them. It runs with decisions
// sent on their own and batched.
func TestGCRAExactAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 32} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			t.Parallel()
			testGCRAExactAcrossInstances(t, batch)
		})
	}
}

func testGCRAExactAcrossInstances(t *testing.T, batch int) {
	_, prefix := testenv.Redis(t)
	c := noRetries(t)
	ctx := context.Background()
	lim := ratelimit.Limit{Rate: 100, Period: 10 * time.Second, Burst: 100}
	newL := func(c redis.Scripter) ratelimit.Limiter {
		l, err := redisrate.NewGCRA(c, lim, redisrate.Options{Prefix: prefix, Batch: batch})
		require.NoError(t, err)
		return l
	}
	l := newL(c)
	serverTime := func() time.Time {
		tm, err := c.Time(ctx).Result()
		require.NoError(t, err)
		return tm
	}
	// The first call takes the whole burst, so the key's bucket starts
	// empty and banks every slot of a stall of up to Period, such as the
	// herd's slow start on a loaded machine. Starting from a nearly full
	// bucket, a stall of more than one interval lost slots for good.
	firstFrom := serverTime()
	res, err := l.AllowN(ctx, "hot", lim.Burst)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	firstTo := serverTime()

	admitted := int64(lim.Burst) + hammerRedis(t, newL, "hot", 2050*time.Millisecond)

	lastFrom := serverTime()
	for {
		res, err := l.AllowN(ctx, "hot", 1)
		require.NoError(t, err)
		if !res.Allowed {
			break
		}
		admitted++
	}
	lastTo := serverTime()

	iv := lim.Interval()
	low := int64(lim.Burst) + int64(lastFrom.Sub(firstTo)/iv)
	high := int64(lim.Burst) + int64(lastTo.Sub(firstFrom)/iv)
	t.Logf("admitted %d; burst + ⌊elapsed/interval⌋ is %d to %d (elapsed %v to %v)",
		admitted, low, high, lastFrom.Sub(firstTo), lastTo.Sub(firstFrom))
	require.GreaterOrEqual(t, admitted, low)
	require.LessOrEqual(t, admitted, high)
	require.LessOrEqual(t, high-low, int64(1), "the clock readings were too far apart to decide")
}

// TestSlidingLogExactAcrossInstances: the same 192 callers hammer one key
// under 100 per 10 s for 1.5 s, well inside one window: exactly 100 get
// through, and the log in Redis holds exactly those 100, each unique; sent
// on their own and batched.
func TestSlidingLogExactAcrossInstances(t *testing.T) {
	t.Parallel()
	for _, batch := range []int{0, 32} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			t.Parallel()
			c, prefix := testenv.Redis(t)
			lim := ratelimit.Limit{Rate: 100, Period: 10 * time.Second, Burst: 100}
			got := hammerRedis(t, func(c redis.Scripter) ratelimit.Limiter {
				l, err := redisrate.NewSlidingLog(c, lim, redisrate.Options{Prefix: prefix, Batch: batch})
				require.NoError(t, err)
				return l
			}, "hot", 1500*time.Millisecond)
			require.Equal(t, int64(100), got)
			n, err := c.ZCard(context.Background(), prefix+"{hot}").Result()
			require.NoError(t, err)
			require.Equal(t, int64(100), n)
		})
	}
}
