package rediscache_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
	"github.com/asynckit/asynckit/cache/rediscache"
	"github.com/asynckit/asynckit/internal/testenv"
)

// pauseHook holds the first command that match accepts, before or after
// it runs on the real server, until release is closed; reached is closed
// when it does. It lets a test run another operation in the middle of one.
type pauseHook struct {
	match   func(redis.Cmder) bool
	after   bool
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func newPauseHook(match func(redis.Cmder) bool, after bool) *pauseHook {
	return &pauseHook{match: match, after: after, reached: make(chan struct{}), release: make(chan struct{})}
}

// command matches the command name on key.
func command(name, key string) func(redis.Cmder) bool {
	return func(cmd redis.Cmder) bool {
		return cmd.Name() == name && len(cmd.Args()) > 1 && fmt.Sprint(cmd.Args()[1]) == key
	}
}

// script matches the script whose SHA1 is hash, run with EVALSHA, on key.
func script(hash, key string) func(redis.Cmder) bool {
	return func(cmd redis.Cmder) bool {
		a := cmd.Args()
		return cmd.Name() == "evalsha" && len(a) > 3 && fmt.Sprint(a[1]) == hash && fmt.Sprint(a[3]) == key
	}
}

func (h *pauseHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *pauseHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *pauseHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		match := h.match(cmd)
		if match && !h.after {
			h.pause()
		}
		err := next(ctx, cmd)
		if match && h.after {
			h.pause()
		}
		return err
	}
}

func (h *pauseHook) pause() {
	h.once.Do(func() {
		close(h.reached)
		<-h.release
	})
}

func constLoader(name string) cache.Loader[int, user] {
	return func(_ context.Context, id int) (user, error) { return user{id, name}, nil }
}

// A GetOrLoad on the same instance while Delete runs must not leave the
// deleted value in the local tier once Delete has returned.
func TestDeleteIsNotUndoneByALoadDuringIt(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	hooked := ownClient(t, client)
	hook := newPauseHook(script(rediscache.DeleteScriptHash, rediscache.ValueKey(ns, "1")), false)
	hooked.AddHook(hook)
	c := newTier(t, rediscache.Options[int, user]{Client: hooked, Namespace: ns, TTL: time.Minute,
		Local: cache.Options[string, user]{TTL: time.Hour}})

	u, err := c.GetOrLoad(ctx, 1, constLoader("old"))
	require.NoError(t, err)
	require.Equal(t, "old", u.Name)

	deleted := make(chan error, 1)
	go func() { deleted <- c.Delete(ctx, 1) }()
	<-hook.reached // Delete is about to remove the key from Redis
	_, err = c.GetOrLoad(ctx, 1, constLoader("new"))
	require.NoError(t, err)
	close(hook.release)
	require.NoError(t, <-deleted)

	u, err = c.GetOrLoad(ctx, 1, constLoader("new"))
	require.NoError(t, err)
	require.Equal(t, "new", u.Name, "the value deleted is not served after Delete returned")
}

// A Get that read Redis before another instance's Set must not keep the
// old value locally once the invalidation of that Set has been received.
func TestGetDoesNotKeepAValueInvalidatedWhileItRead(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	hooked := ownClient(t, client)
	hook := newPauseHook(command("get", rediscache.ValueKey(ns, "5")), true)
	hooked.AddHook(hook)
	dropped := make(chan string, 10)
	a := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true})
	b := newTier(t, rediscache.Options[int, user]{Client: hooked, Namespace: ns, TTL: time.Minute, Invalidate: true,
		Local:        cache.Options[string, user]{TTL: time.Hour},
		OnInvalidate: func(k string) { dropped <- k }})
	waitDropped := func() {
		t.Helper()
		select {
		case <-dropped:
		case <-time.After(5 * time.Second):
			t.Fatal("no invalidation")
		}
	}

	require.NoError(t, a.Set(ctx, 5, user{5, "old"}))
	waitDropped()
	type result struct {
		u   user
		err error
	}
	got := make(chan result, 1)
	go func() {
		u, _, err := b.Get(ctx, 5)
		got <- result{u, err}
	}()
	<-hook.reached // b has read "old" from Redis
	require.NoError(t, a.Set(ctx, 5, user{5, "new"}))
	waitDropped()
	close(hook.release)
	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, "old", r.u.Name, "the Get that read before the Set returns what it read")

	u, ok, err := b.Get(ctx, 5)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "new", u.Name, "the value read before the invalidation was not kept")
}

// Invalidations published while an instance's subscription is cut are
// lost; when the subscription comes back, the instance drops its local
// copies and reports the gap.
func TestResubscribeAfterACutDropsLocalCopies(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	proxied, proxy := testenv.RedisThroughProxy(t, client, func(o *redis.Options) {
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	})

	var mu sync.Mutex
	var subscribeErrs []error
	a := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true})
	b := newTier(t, rediscache.Options[int, user]{Client: proxied, Namespace: ns, TTL: time.Minute, Invalidate: true,
		Local: cache.Options[string, user]{TTL: time.Hour},
		OnError: func(op string, err error) {
			if op == "subscribe" {
				mu.Lock()
				subscribeErrs = append(subscribeErrs, err)
				mu.Unlock()
			}
		}})

	u, err := b.GetOrLoad(ctx, 7, constLoader("old"))
	require.NoError(t, err)
	require.Equal(t, "old", u.Name)

	proxy.Cut()
	require.NoError(t, a.Set(ctx, 7, user{7, "new"})) // b cannot hear this
	proxy.Restore()

	require.Eventually(t, func() bool {
		u, _, err := b.Get(ctx, 7)
		return err == nil && u.Name == "new"
	}, 10*time.Second, 20*time.Millisecond, "b dropped the copy whose invalidation it missed")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, subscribeErrs, "the gap in the subscription was reported")
	require.ErrorIs(t, subscribeErrs[0], rediscache.ErrResubscribed)
	require.Positive(t, b.Stats().Errors)
}

// A Redis that answers slowly must not eat the caller's deadline: with
// RedisTimeout (and a client whose ContextTimeoutEnabled lets go-redis
// honour it), a lookup gives up on Redis after RedisTimeout, counts the
// error and is served by the loader.
func TestSlowRedisFallsBackToTheLoaderAfterRedisTimeout(t *testing.T) {
	client, ns := setup(t)
	proxied, proxy := testenv.RedisThroughProxy(t, client, func(o *redis.Options) {
		o.ContextTimeoutEnabled, o.MaxRetries = true, -1
	})

	var mu sync.Mutex
	errOps := map[string]int{}
	c := newTier(t, rediscache.Options[int, user]{Client: proxied, Namespace: ns, TTL: time.Minute,
		RedisTimeout: 50 * time.Millisecond,
		OnError:      func(op string, err error) { mu.Lock(); errOps[op]++; mu.Unlock() }})
	require.NoError(t, proxied.Ping(context.Background()).Err())
	require.NoError(t, proxy.SetDelay(2*time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	u, err := c.GetOrLoad(ctx, 3, constLoader("from the loader"))
	elapsed := time.Since(start)
	require.NoError(t, err, "a slow Redis does not fail a read the loader can serve")
	require.Equal(t, "from the loader", u.Name)
	require.Less(t, elapsed, time.Second)
	mu.Lock()
	require.Positive(t, errOps["get"], "the slow GET was reported: %v", errOps)
	mu.Unlock()
	t.Logf("served by the loader in %v behind a Redis delayed by 2s", elapsed)
}

func TestRedisTimeoutNeedsContextTimeoutEnabled(t *testing.T) {
	client, ns := setup(t)
	_, err := rediscache.New(context.Background(), rediscache.Options[int, user]{Client: client, Namespace: ns,
		TTL: time.Minute, RedisTimeout: time.Millisecond})
	require.ErrorContains(t, err, "rediscache: RedisTimeout needs a client with ContextTimeoutEnabled")
	_, err = rediscache.New(context.Background(), rediscache.Options[int, user]{Client: client, Namespace: ns,
		TTL: time.Minute, RedisTimeout: -1})
	require.ErrorContains(t, err, "rediscache: RedisTimeout must not be negative")
}

// newDefaultKey makes a cache of key type K with the default Key.
func newDefaultKey[K comparable](t *testing.T, client *redis.Client, ns string) error {
	t.Helper()
	c, err := rediscache.New(context.Background(), rediscache.Options[K, int]{Client: client, Namespace: ns, TTL: time.Minute})
	if err == nil {
		require.NoError(t, c.Close())
	}
	return err
}

type tenantKey struct{ Tenant, ID string }
type cell struct{ Row, Col int }
type userName string

// The default Key is fmt.Sprint for most types, which gives two keys the
// same Redis key for an interface (1 and "1") or for strings inside a
// struct or array ({"a b", "c"} and {"a", "b c"}): such a cache would
// serve one key's value for another. New requires Options.Key there.
func TestKeyIsRequiredWhereTheDefaultWouldCollide(t *testing.T) {
	client, ns := setup(t)
	tests := []struct {
		name    string
		new     func() error
		refused bool
	}{
		{"an interface key", func() error { return newDefaultKey[any](t, client, ns) }, true},
		{"a struct with strings", func() error { return newDefaultKey[tenantKey](t, client, ns) }, true},
		{"an array of strings", func() error { return newDefaultKey[[2]string](t, client, ns) }, true},
		{"a struct of integers", func() error { return newDefaultKey[cell](t, client, ns) }, false},
		{"a named string type", func() error { return newDefaultKey[userName](t, client, ns) }, false},
		{"a float", func() error { return newDefaultKey[float64](t, client, ns) }, false},
		{"a bool", func() error { return newDefaultKey[bool](t, client, ns) }, false},
		{"a fmt.Stringer", func() error { return newDefaultKey[sku](t, client, ns) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.new()
			if tt.refused {
				require.ErrorContains(t, err, "rediscache: Key is required for key type")
			} else {
				require.NoError(t, err)
			}
		})
	}
}

// A load that read the source of truth before another instance's Set must
// not overwrite that Set's newer value in Redis when it finishes.
func TestSlowLoadDoesNotOverwriteANewerSetInRedis(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	a := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true})
	b := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true})

	started, unblock := make(chan struct{}), make(chan struct{})
	loaded := make(chan error, 1)
	go func() {
		_, err := a.GetOrLoad(ctx, 9, func(context.Context, int) (user, error) {
			close(started)
			<-unblock
			return user{9, "old"}, nil // read before b's write
		})
		loaded <- err
	}()
	<-started
	require.NoError(t, b.Set(ctx, 9, user{9, "new"}))
	close(unblock)
	require.NoError(t, <-loaded)

	raw, err := client.Get(ctx, rediscache.ValueKey(ns, "9")).Result()
	require.NoError(t, err)
	require.JSONEq(t, `{"id":9,"name":"new"}`, raw, "the newer Set is kept in Redis")
	c := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute})
	u, err := c.GetOrLoad(ctx, 9, constLoader("loader"))
	require.NoError(t, err)
	require.Equal(t, "new", u.Name)
}

// Without Local.TTL a local copy used to live until evicted, long after
// Redis had expired the value. By default it now lives no longer than TTL.
func TestLocalCopyDoesNotOutliveTheRedisTTLByDefault(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	c := newTier(t, rediscache.Options[int, user]{Client: client, Namespace: ns, TTL: 300 * time.Millisecond})
	require.NoError(t, c.Set(ctx, 1, user{1, "short-lived"}))
	u, ok, err := c.Get(ctx, 1)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "short-lived", u.Name)
	require.Eventually(t, func() bool {
		_, ok, err := c.Get(ctx, 1)
		return err == nil && !ok
	}, 5*time.Second, 20*time.Millisecond, "the local copy expired with the Redis one")
}

// A load that read the source of truth before another instance's write
// and Delete must not put the old value back into Redis once it has heard
// the invalidation of that Delete.
func TestSlowLoadDoesNotRestoreAValueDeletedMeanwhile(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	heard := make(chan string, 10)
	a := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true,
		OnInvalidate: func(k string) { heard <- k }})
	b := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true})

	started, unblock := make(chan struct{}), make(chan struct{})
	loaded := make(chan error, 1)
	go func() {
		_, err := a.GetOrLoad(ctx, 11, func(context.Context, int) (user, error) {
			close(started)
			<-unblock
			return user{11, "old"}, nil // read before the write behind b's Delete
		})
		loaded <- err
	}()
	<-started
	require.NoError(t, b.Delete(ctx, 11))
	select {
	case k := <-heard:
		require.Equal(t, "11", k)
	case <-time.After(5 * time.Second):
		t.Fatal("a did not hear the invalidation")
	}
	close(unblock)
	require.NoError(t, <-loaded)

	n, err := client.Exists(ctx, rediscache.ValueKey(ns, "11")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the value read before the Delete was not written back to Redis")
	_, ok, err := a.Get(ctx, 11)
	require.NoError(t, err)
	require.False(t, ok, "nor kept locally")
}

// A load in flight while the subscription was cut may have missed the
// invalidation of its key: once resubscribed, it writes nothing back.
func TestLoadDuringACutSubscriptionDoesNotWriteBack(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	proxied, proxy := testenv.RedisThroughProxy(t, client, func(o *redis.Options) {
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
	})

	resubscribed := make(chan struct{}, 10)
	a := newTier(t, rediscache.Options[int, user]{Client: ownClient(t, client), Namespace: ns, TTL: time.Minute, Invalidate: true})
	b := newTier(t, rediscache.Options[int, user]{Client: proxied, Namespace: ns, TTL: time.Minute, Invalidate: true,
		OnError: func(op string, err error) {
			if op == "subscribe" {
				resubscribed <- struct{}{}
			}
		}})

	started, unblock := make(chan struct{}), make(chan struct{})
	loaded := make(chan error, 1)
	go func() {
		_, err := b.GetOrLoad(ctx, 13, func(context.Context, int) (user, error) {
			close(started)
			<-unblock
			return user{13, "old"}, nil
		})
		loaded <- err
	}()
	<-started
	proxy.Cut()
	require.NoError(t, a.Delete(ctx, 13)) // b cannot hear this
	proxy.Restore()
	select {
	case <-resubscribed:
	case <-time.After(10 * time.Second):
		t.Fatal("b did not resubscribe")
	}
	close(unblock)
	require.NoError(t, <-loaded)
	n, err := client.Exists(ctx, rediscache.ValueKey(ns, "13")).Result()
	require.NoError(t, err)
	require.Zero(t, n, "the load that may have missed an invalidation wrote nothing back")
}

// Each lookup that reaches Redis counts once: a hit when Redis answers it,
// at once or after waiting for another instance's load, a miss when it
// goes to the loader. Polls while waiting and the check made after taking
// the lock are not lookups of their own.
func TestEachLookupCountsOnceAsARedisHitOrMiss(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	opts := rediscache.Options[int, user]{Namespace: ns, TTL: time.Minute, LockTTL: 5 * time.Second,
		LockPoll: time.Millisecond, LockPollMax: time.Millisecond}
	opts.Client = ownClient(t, client)
	a := newTier(t, opts)
	opts.Client = ownClient(t, client)
	b := newTier(t, opts)

	started, unblock := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		_, err := a.GetOrLoad(ctx, 21, func(context.Context, int) (user, error) {
			close(started)
			<-unblock
			return user{21, "loaded"}, nil
		})
		aDone <- err
	}()
	<-started
	bDone := make(chan error, 1)
	go func() {
		u, err := b.GetOrLoad(ctx, 21, constLoader("must not run"))
		if err == nil && u.Name != "loaded" {
			err = fmt.Errorf("b got %q", u.Name)
		}
		bDone <- err
	}()
	require.Eventually(t, func() bool { return b.Stats().LockWaits == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // b polls a few times
	close(unblock)
	require.NoError(t, <-aDone)
	require.NoError(t, <-bDone)

	as, bs := a.Stats(), b.Stats()
	require.Equal(t, [2]uint64{0, 1}, [2]uint64{as.RedisHits, as.RedisMisses}, "a: one lookup, sent to the loader")
	require.Equal(t, [2]uint64{1, 0}, [2]uint64{bs.RedisHits, bs.RedisMisses}, "b: one lookup, answered by Redis after waiting")
}

// A load that began before another instance's Delete must not write the
// value it read back to Redis, even when it ends before it hears of the
// Delete: pub/sub takes a delivery's time, and an instance may not listen
// at all (Invalidate off, or a subscription being re-established). Here
// the loading instance never hears, so nothing but Redis itself can stop
// the write-back. A load that begins after the Delete stores its value.
func TestLoadHeldAcrossAnotherInstancesDeleteWritesNothingBack(t *testing.T) {
	cases := []struct {
		name    string
		lockTTL time.Duration
		replace bool // the value in Redis before the load could not be decoded
	}{
		{"a plain load", 0, false},
		{"a load under the cross-instance lock", 5 * time.Second, false},
		{"a load that replaces an undecodable value", 0, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			client, ns := setup(t)
			ctx := context.Background()
			id := 30 + i
			key := rediscache.ValueKey(ns, strconv.Itoa(id))
			opts := rediscache.Options[int, user]{Namespace: ns, TTL: time.Minute, LockTTL: c.lockTTL}
			opts.Client = ownClient(t, client)
			deaf := newTier(t, opts) // hears no invalidation
			opts.Client, opts.Invalidate = ownClient(t, client), true
			other := newTier(t, opts)
			if c.replace {
				require.NoError(t, client.Set(ctx, key, "not json", time.Minute).Err())
			}

			started, unblock := make(chan struct{}), make(chan struct{})
			loaded := make(chan error, 1)
			go func() {
				u, err := deaf.GetOrLoad(ctx, id, func(context.Context, int) (user, error) {
					close(started)
					<-unblock
					return user{id, "old"}, nil // read before the change behind the Delete
				})
				if err == nil && u.Name != "old" {
					err = fmt.Errorf("the load returned %q", u.Name)
				}
				loaded <- err
			}()
			<-started
			require.NoError(t, other.Delete(ctx, id))
			close(unblock)
			require.NoError(t, <-loaded)

			n, err := client.Exists(ctx, key).Result()
			require.NoError(t, err)
			require.Zero(t, n, "the value read before the Delete was not written back to Redis")

			opts.Client, opts.Invalidate = ownClient(t, client), false
			fresh := newTier(t, opts)
			u, err := fresh.GetOrLoad(ctx, id, constLoader("new"))
			require.NoError(t, err)
			require.Equal(t, "new", u.Name)
			raw, err := client.Get(ctx, key).Result()
			require.NoError(t, err)
			require.JSONEq(t, fmt.Sprintf(`{"id":%d,"name":"new"}`, id), raw, "a load after the Delete stores its value")
		})
	}
}
