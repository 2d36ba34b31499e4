package rediscache_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
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

type user struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

// setup returns a Redis client and a namespace of the test's own.
func setup(t *testing.T) (*redis.Client, string) {
	t.Helper()
	return testenv.Redis(t)
}

// ownClient returns a client of its own on client's server, as a separate
// process would have.
func ownClient(t *testing.T, client *redis.Client) *redis.Client {
	t.Helper()
	c := redis.NewClient(client.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newTier makes one instance of a two-tier cache over client.
func newTier(t *testing.T, opts rediscache.Options[int, user]) *rediscache.Cache[int, user] {
	t.Helper()
	c, err := rediscache.New(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	return c
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	client, ns := setup(t)
	tests := []struct {
		name string
		opts rediscache.Options[int, user]
		want string
	}{
		{"no client", rediscache.Options[int, user]{Namespace: ns, TTL: time.Minute}, "Client is required"},
		{"no namespace", rediscache.Options[int, user]{Client: client, TTL: time.Minute}, "Namespace is required"},
		{"a namespace with a brace", rediscache.Options[int, user]{Client: client, Namespace: ns + "{x}:", TTL: time.Minute}, "must not contain { or }"},
		{"no TTL", rediscache.Options[int, user]{Client: client, Namespace: ns}, "TTL must be positive"},
		{"Jitter of one", rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, Jitter: 1}, "Jitter"},
		{"negative LockTTL", rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, LockTTL: -1}, "LockTTL"},
		{"LockPoll above LockPollMax", rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, LockPoll: time.Second, LockPollMax: time.Millisecond}, "LockPoll"},
		{"invalid local options", rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, Local: cache.Options[string, user]{MaxEntries: -1}}, "Local: cache: MaxEntries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := rediscache.New(context.Background(), tt.opts)
			require.Nil(t, c)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestTwoTiersLocalThenRedisThenLoader(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	var loads atomic.Int32
	load := func(_ context.Context, id int) (user, error) {
		loads.Add(1)
		return user{ID: id, Name: fmt.Sprintf("user-%d", id)}, nil
	}
	opts := rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, Jitter: 0.5}
	a, b := newTier(t, opts), newTier(t, opts)

	u, err := a.GetOrLoad(ctx, 7, load)
	require.NoError(t, err)
	require.Equal(t, user{7, "user-7"}, u)
	require.Equal(t, int32(1), loads.Load())

	raw, err := client.Get(ctx, rediscache.ValueKey(ns, "7")).Result()
	require.NoError(t, err, "the loaded value was written to Redis")
	require.JSONEq(t, `{"id":7,"name":"user-7"}`, raw)
	ttl, err := client.PTTL(ctx, rediscache.ValueKey(ns, "7")).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, ttl, time.Minute)
	require.Greater(t, ttl, 30*time.Second-time.Second, "jitter takes at most half the TTL")

	u, err = b.GetOrLoad(ctx, 7, load)
	require.NoError(t, err)
	require.Equal(t, user{7, "user-7"}, u)
	require.Equal(t, int32(1), loads.Load(), "the second instance read Redis, not the loader")
	require.Equal(t, uint64(1), b.Stats().RedisHits)

	u, err = b.GetOrLoad(ctx, 7, load)
	require.NoError(t, err)
	require.Equal(t, user{7, "user-7"}, u)
	require.Equal(t, uint64(1), b.Stats().RedisHits, "the repeat came from the local tier")
	require.Equal(t, uint64(1), b.Stats().Local.Hits)

	got, ok, err := b.Get(ctx, 8)
	require.NoError(t, err)
	require.False(t, ok)
	require.Zero(t, got)

	require.NoError(t, a.Set(ctx, 8, user{8, "set"}))
	got, ok, err = b.Get(ctx, 8)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, user{8, "set"}, got)
}

func TestJitterSpreadsRedisTTLs(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	c := newTier(t, rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: 100 * time.Second, Jitter: 0.2})
	var ttls []time.Duration
	for id := range 50 {
		require.NoError(t, c.Set(ctx, id, user{ID: id}))
		ttl, err := client.PTTL(ctx, rediscache.ValueKey(ns, strconv.Itoa(id))).Result()
		require.NoError(t, err)
		require.LessOrEqual(t, ttl, 100*time.Second)
		require.Greater(t, ttl, 79*time.Second)
		ttls = append(ttls, ttl)
	}
	slices.Sort(ttls)
	require.Greater(t, ttls[len(ttls)-1]-ttls[0], 10*time.Second, "50 TTLs spread over the 20s window")
}

func TestUndecodableRedisValueFallsBackToTheLoader(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	var ops []string
	var mu sync.Mutex
	c := newTier(t, rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute,
		OnError: func(op string, err error) { mu.Lock(); ops = append(ops, op); mu.Unlock() }})
	require.NoError(t, client.Set(ctx, rediscache.ValueKey(ns, "1"), "not json", time.Minute).Err())
	u, err := c.GetOrLoad(ctx, 1, func(context.Context, int) (user, error) { return user{1, "fresh"}, nil })
	require.NoError(t, err)
	require.Equal(t, user{1, "fresh"}, u)
	require.Equal(t, []string{"decode"}, ops)
	require.Equal(t, uint64(1), c.Stats().Errors)
	raw, err := client.Get(ctx, rediscache.ValueKey(ns, "1")).Result()
	require.NoError(t, err)
	require.JSONEq(t, `{"id":1,"name":"fresh"}`, raw, "the bad value was replaced")
}

func TestLoaderErrorReachesTheCallerAndIsNotStored(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	c := newTier(t, rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute})
	errDown := errors.New("db down")
	_, err := c.GetOrLoad(ctx, 1, func(context.Context, int) (user, error) { return user{}, errDown })
	require.ErrorIs(t, err, errDown)
	n, err := client.Exists(ctx, rediscache.ValueKey(ns, "1")).Result()
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = c.GetOrLoad(ctx, 1, nil)
	require.ErrorContains(t, err, "rediscache: nil loader")
	//lint:ignore SA1012 a nil context is the bad input under test
	_, err = c.GetOrLoad(nil, 1, func(context.Context, int) (user, error) { return user{}, nil })
	require.ErrorContains(t, err, "rediscache: nil context")
	//lint:ignore SA1012 a nil context is the bad input under test
	require.ErrorContains(t, c.Set(nil, 1, user{}), "rediscache: nil context")
	//lint:ignore SA1012 a nil context is the bad input under test
	require.ErrorContains(t, c.Delete(nil, 1), "rediscache: nil context")
	//lint:ignore SA1012 a nil context is the bad input under test
	_, _, err = c.Get(nil, 1)
	require.ErrorContains(t, err, "rediscache: nil context")
}

func TestDeleteInvalidatesEveryInstance(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	const instances = 3
	type seen struct {
		instance int
		at       time.Time
	}
	invalidated := make(chan seen, 100)
	var tiers []*rediscache.Cache[int, user]
	for i := range instances {
		tiers = append(tiers, newTier(t, rediscache.Options[int, user]{
			Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true,
			Local:        cache.Options[string, user]{TTL: time.Hour},
			OnInvalidate: func(string) { invalidated <- seen{i, time.Now()} },
		}))
	}
	var version atomic.Int32
	load := func(_ context.Context, id int) (user, error) {
		return user{ID: id, Name: fmt.Sprintf("v%d", version.Load())}, nil
	}

	const rounds = 20
	var latencies []time.Duration
	for round := range rounds {
		for _, c := range tiers {
			u, err := c.GetOrLoad(ctx, 1, load)
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("v%d", round), u.Name, "every instance sees the current version")
		}
		version.Add(1)
		from := round % instances
		start := time.Now()
		require.NoError(t, tiers[from].Delete(ctx, 1))
		got := map[int]bool{}
		for len(got) < instances-1 {
			select {
			case s := <-invalidated:
				require.NotEqual(t, from, s.instance, "an instance ignores its own message")
				got[s.instance] = true
				latencies = append(latencies, s.at.Sub(start))
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: invalidation reached only %v", round, got)
			}
		}
	}
	slices.Sort(latencies)
	t.Logf("invalidation latency across %d instances, %d deliveries: p50 %v, p90 %v, max %v",
		instances, len(latencies), latencies[len(latencies)/2], latencies[len(latencies)*9/10], latencies[len(latencies)-1])
	require.Less(t, latencies[len(latencies)/2], 100*time.Millisecond, "typically within milliseconds")
	var total uint64
	for _, c := range tiers {
		total += c.Stats().Invalidations
	}
	require.Equal(t, uint64(rounds*(instances-1)), total)
}

func TestSetInvalidatesOtherInstances(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	dropped := make(chan string, 1)
	a := newTier(t, rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, Invalidate: true})
	b := newTier(t, rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, Invalidate: true,
		OnInvalidate: func(k string) { dropped <- k }})
	require.NoError(t, a.Set(ctx, 5, user{5, "old"}))
	select {
	case k := <-dropped:
		require.Equal(t, "5", k)
	case <-time.After(5 * time.Second):
		t.Fatal("no invalidation")
	}
	u, ok, err := b.Get(ctx, 5)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "old", u.Name)
	require.NoError(t, a.Set(ctx, 5, user{5, "new"}))
	<-dropped
	u, _, err = b.Get(ctx, 5)
	require.NoError(t, err)
	require.Equal(t, "new", u.Name, "b dropped its stale local copy")
}

func TestCrossInstanceSingleFlightLoadsOnce(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	const instances, callers = 3, 10
	var loads atomic.Int32
	load := func(_ context.Context, id int) (user, error) {
		loads.Add(1)
		time.Sleep(300 * time.Millisecond)
		return user{ID: id, Name: "once"}, nil
	}
	var tiers []*rediscache.Cache[int, user]
	for range instances {
		tiers = append(tiers, newTier(t, rediscache.Options[int, user]{
			Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, LockTTL: 5 * time.Second,
		}))
	}
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for _, c := range tiers {
		for range callers {
			wg.Go(func() {
				<-startGate
				u, err := c.GetOrLoad(ctx, 9, load)
				require.NoError(t, err)
				require.Equal(t, "once", u.Name)
			})
		}
	}
	close(startGate)
	wg.Wait()
	require.Equal(t, int32(1), loads.Load(), "%d instances × %d callers, one load", instances, callers)
	var waits uint64
	for _, c := range tiers {
		waits += c.Stats().LockWaits
	}
	require.Equal(t, uint64(instances-1), waits, "the other instances waited for the lock holder")
	n, err := client.Exists(ctx, rediscache.LockKey(ns, "9")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the lock was released")
}

func TestLockIsReleasedOnlyByItsOwner(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	c := newTier(t, rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute,
		LockTTL: 50 * time.Millisecond, LockPoll: time.Millisecond})
	// The load outlives its lock; another owner takes the lock meanwhile
	// and must still hold it after the first load releases "its" lock.
	_, err := c.GetOrLoad(ctx, 3, func(context.Context, int) (user, error) {
		time.Sleep(100 * time.Millisecond)
		ok, err := client.SetNX(ctx, rediscache.LockKey(ns, "3"), "someone-else", time.Minute).Result()
		require.NoError(t, err)
		require.True(t, ok, "the first lock expired")
		return user{ID: 3}, nil
	})
	require.NoError(t, err)
	owner, err := client.Get(ctx, rediscache.LockKey(ns, "3")).Result()
	require.NoError(t, err)
	require.Equal(t, "someone-else", owner)
}

func TestFailedLoadReleasesTheLockForTheNextInstance(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	opts := rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: time.Minute, LockTTL: 10 * time.Second}
	a, b := newTier(t, opts), newTier(t, opts)
	errDown := errors.New("db down")
	var loads atomic.Int32
	load := func(_ context.Context, id int) (user, error) {
		if loads.Add(1) == 1 {
			time.Sleep(100 * time.Millisecond)
			return user{}, errDown
		}
		return user{ID: id, Name: "second try"}, nil
	}
	aErr := make(chan error, 1)
	go func() { _, err := a.GetOrLoad(ctx, 4, load); aErr <- err }()
	require.Eventually(t, func() bool { return loads.Load() == 1 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	u, err := b.GetOrLoad(ctx, 4, load)
	require.NoError(t, err)
	require.Equal(t, "second try", u.Name)
	require.Less(t, time.Since(start), 5*time.Second, "b took over when a released the lock, not when it expired")
	require.ErrorIs(t, <-aErr, errDown)
	require.Equal(t, int32(2), loads.Load())
	require.Equal(t, uint64(1), b.Stats().LockWaits)
}

type sku struct{ maker, code string }

func (s sku) String() string { return s.maker + "/" + s.code }

func TestKeysAreFormattedForRedis(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	exists := func(t *testing.T, key string) {
		t.Helper()
		n, err := client.Exists(ctx, key).Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "Redis key %q", key)
	}
	t.Run("string keys are used as they are", func(t *testing.T) {
		c, err := rediscache.New(ctx, rediscache.Options[string, int]{Client: client, Namespace: ns + "s:", TTL: time.Minute})
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Set(ctx, "alice", 1))
		exists(t, rediscache.ValueKey(ns+"s:", "alice"))
	})
	t.Run("integer keys are decimal", func(t *testing.T) {
		c, err := rediscache.New(ctx, rediscache.Options[int64, int]{Client: client, Namespace: ns + "i:", TTL: time.Minute})
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Set(ctx, -42, 1))
		exists(t, rediscache.ValueKey(ns+"i:", "-42"))
	})
	t.Run("a fmt.Stringer key uses String", func(t *testing.T) {
		c, err := rediscache.New(ctx, rediscache.Options[sku, int]{Client: client, Namespace: ns + "k:", TTL: time.Minute})
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Set(ctx, sku{"acme", "x1"}, 1))
		exists(t, rediscache.ValueKey(ns+"k:", "acme/x1"))
	})
	t.Run("Options.Key overrides the default", func(t *testing.T) {
		c, err := rediscache.New(ctx, rediscache.Options[int, int]{Client: client, Namespace: ns + "c:", TTL: time.Minute,
			Key: func(id int) string { return fmt.Sprintf("user-%04d", id) }})
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.Set(ctx, 7, 1))
		exists(t, rediscache.ValueKey(ns+"c:", "user-0007"))
	})
}
