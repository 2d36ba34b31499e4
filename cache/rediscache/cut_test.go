package rediscache_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
	"github.com/asynckit/asynckit/cache/rediscache"
	"github.com/asynckit/asynckit/internal/testenv"
)

// TestRedisCutMidRunIsServedByTheLoader runs readers through a loopback
// proxy to the real Redis, cuts the proxy a third of the way in and
// restores it at two thirds. Every read must succeed, the Redis errors of
// the middle third must be counted and reported, and once restored the
// cache must use Redis again.
func TestRedisCutMidRunIsServedByTheLoader(t *testing.T) {
	base, ns := setup(t)
	client, proxy := testenv.RedisThroughProxy(t, base, func(o *redis.Options) {
		o.MaxRetries = -1 // report the first failure instead of retrying it
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	})

	var mu sync.Mutex
	errOps := map[string]int{}
	c := newTier(t, rediscache.Options[int, user]{
		Client: client, Namespace: ns, TTL: time.Minute,
		// A tiny local tier, so that nearly every read goes to Redis.
		Local:   cache.Options[string, user]{MaxEntries: 1},
		OnError: func(op string, err error) { mu.Lock(); errOps[op]++; mu.Unlock() },
	})
	var loads atomic.Int64
	load := func(_ context.Context, id int) (user, error) {
		loads.Add(1)
		return user{ID: id, Name: fmt.Sprintf("user-%d", id)}, nil
	}

	const readers, perReader, keySpace = 4, 300, 100
	var done atomic.Int64
	phase := func(n int64) {
		for done.Load() < n {
			time.Sleep(time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for r := range readers {
		wg.Go(func() {
			for i := range perReader {
				id := (r*perReader + i) % keySpace
				u, err := c.GetOrLoad(context.Background(), id, load)
				if err != nil || u.ID != id {
					failed.Add(1)
				}
				done.Add(1)
				time.Sleep(200 * time.Microsecond)
			}
		})
	}
	total := int64(readers * perReader)
	phase(total / 3)
	before := c.Stats()
	proxy.Cut()
	phase(2 * total / 3)
	during := c.Stats()
	proxy.Restore()
	wg.Wait()
	after := c.Stats()

	require.Zero(t, failed.Load(), "no read failed while Redis was cut")
	require.Zero(t, before.Errors, "no Redis error before the cut")
	require.Positive(t, during.Errors, "the cut was seen")
	mu.Lock()
	require.Positive(t, errOps["get"], "failed GETs were reported: %v", errOps)
	reported := 0
	for _, n := range errOps {
		reported += n
	}
	require.Equal(t, int(after.Errors), reported, "every counted error was reported: %v", errOps)
	mu.Unlock()
	require.Greater(t, after.RedisHits, during.RedisHits, "Redis answered again after Restore")
	t.Logf("%d reads, cut for the middle third: %d Redis errors counted (%v), %d loader calls, Redis hits %d before the cut / %d after restore",
		total, after.Errors, errOps, loads.Load(), before.RedisHits, after.RedisHits-during.RedisHits)
}
