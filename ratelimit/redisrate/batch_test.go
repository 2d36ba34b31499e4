package redisrate_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/faultproxy"
	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/redisrate"
)

// pipelineHook counts the scripts a client sends and the round trips they
// take: a lone command or a whole pipeline is one round trip. Other
// commands, such as those go-redis sends to set up a new connection, are
// not counted.
type pipelineHook struct{ commands, trips atomic.Int64 }

func (h *pipelineHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (h *pipelineHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.count(cmds)
		return next(ctx, cmds)
	}
}

func (h *pipelineHook) count(cmds []redis.Cmder) {
	n := 0
	for _, c := range cmds {
		if name := c.Name(); name == "evalsha" || name == "eval" {
			n++
		}
	}
	if n > 0 {
		h.commands.Add(int64(n))
		h.trips.Add(1)
	}
}

// TestBatchSharesRoundTrips: 64 callers deciding at once through a batched
// limiter, over a link slow enough (2 ms) that calls queue while every lane
// is out, send exactly one command per decision, in far fewer round trips
// than decisions, and every decision is counted: 64 × 20 decisions on 64
// keys with a burst of 20 admit all of them, and the 21st on each key is
// denied.
func TestBatchSharesRoundTrips(t *testing.T) {
	t.Parallel()
	base, prefix := testenv.Redis(t)
	c, proxy := testenv.RedisThroughProxy(t, base, nil)
	hook := &pipelineHook{}
	c.AddHook(hook)
	l, err := redisrate.NewGCRA(c, ratelimit.PerHour(20), redisrate.Options{Prefix: prefix, Batch: 16})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = l.AllowN(ctx, "warm", 1)
	require.NoError(t, err)
	require.NoError(t, proxy.SetDelay(2*time.Millisecond))

	const callers, each = 64, 20
	commands, trips := hook.commands.Load(), hook.trips.Load()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Go(func() {
			<-start
			for range each {
				res, err := l.AllowN(ctx, "k"+strconv.Itoa(i), 1)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	require.Equal(t, int64(callers*each), admitted.Load())
	sent, rounds := hook.commands.Load()-commands, hook.trips.Load()-trips
	t.Logf("%d decisions: %d commands in %d round trips", callers*each, sent, rounds)
	require.Equal(t, int64(callers*each), sent, "one command per decision")
	require.Less(t, rounds, int64(callers*each/3), "batches shared round trips, 3 decisions a trip or more")
	require.NoError(t, proxy.SetDelay(0))
	for i := range callers {
		res, err := l.AllowN(ctx, "k"+strconv.Itoa(i), 1)
		require.NoError(t, err)
		require.False(t, res.Allowed, "key %d spent its burst", i)
	}
}

// TestBatchReloadsAFlushedScript: after SCRIPT FLUSH, a batch whose
// EVALSHA meets NOSCRIPT loads the script and sends those decisions again.
// (Other tests' scripts are reloaded the same way.)
func TestBatchReloadsAFlushedScript(t *testing.T) {
	c, prefix := testenv.Redis(t)
	l, err := redisrate.NewSlidingWindow(c, ratelimit.PerHour(5), redisrate.Options{Prefix: prefix, Batch: 8})
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 3 {
		require.NoError(t, c.ScriptFlush(ctx).Err())
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() {
				res, err := l.AllowN(ctx, "k"+strconv.Itoa(i), 1)
				if err != nil || !res.Allowed {
					t.Errorf("after SCRIPT FLUSH: %+v, %v", res, err)
				}
			})
		}
		wg.Wait()
		res, err := l.AllowN(ctx, "k"+strconv.Itoa(i), 1)
		require.NoError(t, err)
		require.False(t, res.Allowed, "each of the 5 was counted once")
	}
}

// batchedBehindProxy returns a GCRA allowing a million a second, batching
// up to batch decisions, whose client reaches the test's Redis through a
// fault-injecting proxy; the script is loaded and a connection is open.
func batchedBehindProxy(t *testing.T, batch int) (*faultproxy.Proxy, *redisrate.Limiter) {
	t.Helper()
	base, prefix := testenv.Redis(t)
	c, proxy := testenv.RedisThroughProxy(t, base, func(o *redis.Options) {
		o.MaxRetries, o.ContextTimeoutEnabled, o.DialTimeout = -1, true, 200*time.Millisecond
	})
	l, err := redisrate.NewGCRA(c, ratelimit.PerSecond(1_000_000), redisrate.Options{Prefix: prefix, Batch: batch})
	require.NoError(t, err)
	_, err = l.AllowN(context.Background(), "warm", 1)
	require.NoError(t, err)
	return proxy, l
}

// TestBatchCallersKeepTheirDeadlines sends 100 callers with random
// deadlines through a batched limiter over a slow link, so that calls
// queue, leave the queue when their deadline passes, are given a lane and
// hand it on. Every call must end, with a result or its own deadline's
// error, and once all have, no lane may still be held: the limiter serves
// promptly afterwards.
func TestBatchCallersKeepTheirDeadlines(t *testing.T) {
	t.Parallel()
	proxy, l := batchedBehindProxy(t, 4)
	ctx := context.Background()

	require.NoError(t, proxy.SetDelay(5*time.Millisecond))
	var ok, timedOut atomic.Int64
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			for range 10 {
				d := time.Duration(5+r.IntN(200)) * time.Millisecond
				cctx, cancel := context.WithTimeout(ctx, d)
				start := time.Now()
				_, err := l.AllowN(cctx, "k"+strconv.Itoa(r.IntN(5)), 1)
				took := time.Since(start)
				cancel()
				switch {
				case err == nil:
					ok.Add(1)
				case timedOutErr(err):
					timedOut.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
				// A caller waits for at most its own deadline, or, when it
				// leads, for its batch's latest (each under 205 ms from
				// calls that began after it), plus scheduling slack.
				if took > 2*time.Second {
					t.Errorf("a call with a %v deadline took %v", d, took)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("1000 calls over a 5 ms link: %d decided, %d ran out of time", ok.Load(), timedOut.Load())
	require.Positive(t, ok.Load())
	require.Positive(t, timedOut.Load())
	require.Zero(t, redisrate.LanesHeld(l), "a lane was lost")

	require.NoError(t, proxy.SetDelay(0))
	for i := range 20 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, err := l.AllowN(cctx, "after", 1)
		cancel()
		require.NoError(t, err, "call %d after the storm", i)
		require.True(t, res.Allowed)
	}
}

// timedOutErr reports whether err is a call running out of time: its ctx's
// error, or, since go-redis turns a ctx deadline into the connection's,
// a network timeout.
func timedOutErr(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// TestBatchThroughACutLink: when the link to Redis is cut under a batch,
// every call in it gets an error rather than hanging, and once the link is
// back the limiter decides again.
func TestBatchThroughACutLink(t *testing.T) {
	t.Parallel()
	proxy, l := batchedBehindProxy(t, 8)
	ctx := context.Background()

	require.NoError(t, proxy.SetDelay(50*time.Millisecond))
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 32 {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			if _, err := l.AllowN(cctx, "k", 1); err != nil {
				failed.Add(1)
			}
		})
	}
	time.Sleep(20 * time.Millisecond) // the first batch is on the wire
	proxy.Cut()
	wg.Wait()
	require.Positive(t, failed.Load(), "calls under the cut failed")

	proxy.Restore()
	require.NoError(t, proxy.SetDelay(0))
	require.Eventually(t, func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		res, err := l.AllowN(cctx, "k", 1)
		return err == nil && res.Allowed
	}, 5*time.Second, 10*time.Millisecond)
}

// panicHook, once armed, holds each lone script for 50 ms, so that calls
// queue behind those, and panics in the first pipeline of scripts, which
// carries queued calls.
type panicHook struct {
	armed atomic.Bool
}

func (h *panicHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *panicHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.armed.Load() && cmd.Name() == "evalsha" {
			time.Sleep(50 * time.Millisecond)
		}
		return next(ctx, cmd)
	}
}
func (h *panicHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		// (A new connection's setup is a pipeline too, of other commands.)
		if cmds[0].Name() == "evalsha" && h.armed.CompareAndSwap(true, false) {
			panic("hook failed")
		}
		return next(ctx, cmds)
	}
}

// TestBatchSurvivesAPanickingSend: when sending a batch panics, the panic
// reaches the caller that sent it, every other call in that batch gets an
// error, and the limiter goes on deciding: the lane was passed on.
func TestBatchSurvivesAPanickingSend(t *testing.T) {
	t.Parallel()
	c, prefix := testenv.Redis(t)
	hook := &panicHook{}
	c.AddHook(hook)
	l, err := redisrate.NewGCRA(c, ratelimit.PerSecond(1_000_000), redisrate.Options{Prefix: prefix, Batch: 8})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = l.AllowN(ctx, "warm", 1)
	require.NoError(t, err)

	hook.armed.Store(true)
	var panics, errs, oks atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			defer func() {
				if recover() != nil {
					panics.Add(1)
				}
			}()
			if _, err := l.AllowN(ctx, "k", 1); err != nil {
				require.ErrorContains(t, err, "panicked")
				errs.Add(1)
			} else {
				oks.Add(1)
			}
		})
	}
	wg.Wait()
	t.Logf("16 calls: %d panicked (the sender), %d errors, %d decided", panics.Load(), errs.Load(), oks.Load())
	require.Equal(t, int64(1), panics.Load())
	require.Positive(t, errs.Load(), "the rest of the panicking batch")
	require.Equal(t, int64(16), panics.Load()+errs.Load()+oks.Load())
	require.Zero(t, redisrate.LanesHeld(l), "a lane was lost")
	for range 5 {
		res, err := l.AllowN(ctx, "k", 1)
		require.NoError(t, err)
		require.True(t, res.Allowed)
	}
}
