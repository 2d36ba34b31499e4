package cache_test

import (
	"context"
	"errors"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
)

// A loader that ends its goroutine with runtime.Goexit (t.FailNow in a
// test's loader does) neither returns nor panics; its waiters must still
// get an error, and the key must load again afterwards.
func TestLoaderThatExitsItsGoroutineFailsItsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{})
		defer c.Close()
		ctx := context.Background()
		exit := func(context.Context, string) (int, error) {
			runtime.Goexit()
			return 0, nil
		}
		_, err := c.GetOrLoad(ctx, "k", exit)
		require.ErrorIs(t, err, cache.ErrLoaderExited)

		found, err := c.GetOrLoadMany(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]int, error) {
			runtime.Goexit()
			return nil, nil
		})
		require.ErrorIs(t, err, cache.ErrLoaderExited)
		require.Empty(t, found)

		v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (int, error) { return 7, nil })
		require.NoError(t, err)
		require.Equal(t, 7, v)
		st := c.Stats()
		require.Equal(t, uint64(3), st.Loads)
		require.Equal(t, uint64(2), st.LoadErrors)
	})
}

// A key not equal to itself (a NaN, alone or in an interface) could never
// be found again: storing it would only evict real entries, and a load of
// it could never be shared or forgotten. Such a key is refused.
func TestKeysNotEqualToThemselvesAreRefused(t *testing.T) {
	load := func(context.Context, any) (int, error) { return 1, nil }
	bulk := func(_ context.Context, keys []any) (map[any]int, error) {
		m := map[any]int{}
		for _, k := range keys {
			m[k] = 1
		}
		return m, nil
	}
	tests := []struct {
		name string
		key  any
	}{
		{"float NaN", math.NaN()},
		{"NaN inside a struct", struct{ F float64 }{math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t, cache.Options[any, int]{MaxEntries: 64})
			defer c.Close()
			for i := range 64 {
				c.Set(i, i)
			}
			for range 100 {
				c.Set(tt.key, 1)
				c.SetWithTTL(tt.key, 1, time.Minute)
			}
			require.Equal(t, 64, c.Len(), "a NaN key is not stored")
			for i := range 64 {
				_, ok := c.Get(i)
				require.True(t, ok, "no entry was evicted for a NaN key")
			}
			_, err := c.GetOrLoad(context.Background(), tt.key, load)
			require.ErrorIs(t, err, cache.ErrKeyNotComparable)
			_, err = c.GetOrLoadMany(context.Background(), []any{1, tt.key}, bulk)
			require.ErrorIs(t, err, cache.ErrKeyNotComparable)
		})
	}
}

// The zero value of K is an ordinary key, also when its hash is that of
// the shard's tombstone.
func TestZeroKeyIsAnOrdinaryKey(t *testing.T) {
	c := newCache(t, cache.Options[string, int]{MaxEntries: 64})
	defer c.Close()
	_, ok := c.Get("")
	require.False(t, ok)
	c.Set("", 1)
	v, ok := c.Get("")
	require.True(t, ok)
	require.Equal(t, 1, v)
	require.True(t, c.Delete(""))
	_, ok = c.Get("")
	require.False(t, ok)
	require.False(t, c.Delete(""))
	v, err := c.GetOrLoad(context.Background(), "", func(context.Context, string) (int, error) { return 2, nil })
	require.NoError(t, err)
	require.Equal(t, 2, v)
	require.Equal(t, 1, c.Len())
}

// Background refreshes run at most MaxRefreshes at a time: one caller
// walking many keys due for a refresh cannot start a goroutine and a
// loader call for each of them. A refresh over the bound is skipped, the
// value is served as it is, and a later hit starts it.
func TestBackgroundRefreshesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[int, int]{RefreshAfter: time.Second, MaxRefreshes: 2})
		defer c.Close()
		ctx := context.Background()
		for k := range 5 {
			_, err := c.GetOrLoad(ctx, k, func(context.Context, int) (int, error) { return 0, nil })
			require.NoError(t, err)
		}
		time.Sleep(2 * time.Second)
		var running, ran atomic.Int32
		unblock := make(chan struct{})
		reload := func(_ context.Context, k int) (int, error) {
			running.Add(1)
			defer running.Add(-1)
			<-unblock
			ran.Add(1)
			return 1, nil
		}
		for k := range 5 {
			v, err := c.GetOrLoad(ctx, k, reload)
			require.NoError(t, err)
			require.Zero(t, v, "the due value is served at once")
		}
		synctest.Wait()
		require.Equal(t, int32(2), running.Load(), "no more than MaxRefreshes reloads run")
		st := c.Stats()
		require.Equal(t, uint64(2), st.Refreshes)
		require.Equal(t, uint64(3), st.RefreshesSkipped)

		close(unblock)
		synctest.Wait()
		require.Equal(t, int32(2), ran.Load())
		// Three keys are still due and two slots are free: two rounds of
		// hits refresh them all.
		for range 2 {
			for k := range 5 {
				_, err := c.GetOrLoad(ctx, k, reload)
				require.NoError(t, err)
			}
			synctest.Wait()
		}
		require.Equal(t, int32(5), ran.Load(), "the skipped refreshes ran on a later hit")
		require.Equal(t, uint64(5), c.Stats().Refreshes)
		for k := range 5 {
			v, ok := c.Get(k)
			require.True(t, ok)
			require.Equal(t, 1, v)
		}
	})
}

func TestNewRejectsNegativeMaxRefreshes(t *testing.T) {
	_, err := cache.New(cache.Options[int, int]{MaxRefreshes: -1})
	require.ErrorContains(t, err, "cache: MaxRefreshes must not be negative")
}

// With StaleIfError and NegativeTTL, a failed reload of an expired entry
// serves the stale value, and the failing backend is asked again only
// after NegativeTTL, as it is when no stale value exists: not on every
// lookup.
func TestStaleValueAfterAFailedLoadWaitsNegativeTTLBeforeRetrying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, string]{TTL: time.Minute, StaleIfError: time.Minute, NegativeTTL: 10 * time.Second})
		defer c.Close()
		var loads atomic.Int32
		var failing atomic.Bool
		load := func(context.Context, string) (string, error) {
			loads.Add(1)
			if failing.Load() {
				return "", errors.New("backend down")
			}
			return "v1", nil
		}
		ctx := context.Background()
		_, err := c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		failing.Store(true)
		time.Sleep(time.Minute)

		for range 5 {
			v, err := c.GetOrLoad(ctx, "k", load)
			require.NoError(t, err)
			require.Equal(t, "v1", v)
		}
		require.Equal(t, int32(2), loads.Load(), "one failed reload per NegativeTTL")
		_, ok := c.Get("k")
		require.False(t, ok, "Get still does not serve past TTL")

		time.Sleep(10 * time.Second)
		v, err := c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, "v1", v)
		require.Equal(t, int32(3), loads.Load(), "retried once NegativeTTL passed")

		failing.Store(false)
		time.Sleep(10 * time.Second)
		v, err = c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, "v1", v)
		require.Equal(t, int32(4), loads.Load())
		v, ok = c.Get("k")
		require.True(t, ok, "the successful reload is fresh")
		require.Equal(t, "v1", v)
		require.Equal(t, uint64(6), c.Stats().StaleServed)
	})
}

// A background refresh that a Set, Delete or Purge overtakes does not
// store its result: the write wins, as it does over a foreground load.
func TestWriteDuringARefreshIsNotUndoneByIt(t *testing.T) {
	for _, op := range []string{"Set", "Delete", "Purge"} {
		t.Run(op+" wins over the refresh in flight", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, cache.Options[string, string]{TTL: time.Hour, RefreshAfter: time.Minute})
				defer c.Close()
				c.Set("k", "v1")
				time.Sleep(time.Minute)
				v, err := c.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) {
					time.Sleep(time.Second)
					return "refreshed", nil
				})
				require.NoError(t, err)
				require.Equal(t, "v1", v)
				time.Sleep(time.Millisecond)
				switch op {
				case "Set":
					c.Set("k", "new")
				case "Delete":
					c.Delete("k")
				case "Purge":
					c.Purge()
				}
				time.Sleep(2 * time.Second)
				synctest.Wait()
				require.Equal(t, uint64(1), c.Stats().Loads, "the refresh ran")
				v, ok := c.Get("k")
				if op == "Set" {
					require.True(t, ok)
					require.Equal(t, "new", v)
				} else {
					require.False(t, ok)
				}
			})
		})
	}
}
