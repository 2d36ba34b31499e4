package cache_test

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
)

func newCache[K comparable, V any](t *testing.T, opts cache.Options[K, V]) *cache.Cache[K, V] {
	t.Helper()
	c, err := cache.New(opts)
	require.NoError(t, err)
	return c
}

func TestNewRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opts cache.Options[string, int]
		want string
	}{
		{"negative MaxEntries", cache.Options[string, int]{MaxEntries: -1}, "MaxEntries"},
		{"negative TTL", cache.Options[string, int]{TTL: -time.Second}, "TTL"},
		{"Jitter of one", cache.Options[string, int]{Jitter: 1}, "Jitter"},
		{"negative Jitter", cache.Options[string, int]{Jitter: -0.1}, "Jitter"},
		{"RefreshAfter not below TTL", cache.Options[string, int]{TTL: time.Second, RefreshAfter: time.Second}, "RefreshAfter"},
		{"negative RefreshAfter", cache.Options[string, int]{RefreshAfter: -1}, "RefreshAfter"},
		{"negative StaleIfError", cache.Options[string, int]{StaleIfError: -1}, "StaleIfError"},
		{"negative NegativeTTL", cache.Options[string, int]{NegativeTTL: -1}, "NegativeTTL"},
		{"negative LoadTimeout", cache.Options[string, int]{LoadTimeout: -1}, "LoadTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := cache.New(tt.opts)
			require.Nil(t, c)
			require.ErrorContains(t, err, "cache: "+tt.want)
		})
	}
}

func TestZeroOptionsGiveTheDefaultBound(t *testing.T) {
	c := newCache(t, cache.Options[int, int]{})
	defer c.Close()
	for i := range cache.DefaultMaxEntries * 2 {
		c.Set(i, i)
	}
	require.Equal(t, cache.DefaultMaxEntries, c.Len())
}

func TestGetSetDeleteLenPurge(t *testing.T) {
	var mu sync.Mutex
	evicted := map[string]cache.EvictReason{}
	c := newCache(t, cache.Options[string, int]{OnEvict: func(k string, _ int, r cache.EvictReason) {
		mu.Lock()
		defer mu.Unlock()
		evicted[k] = r
	}})
	defer c.Close()

	_, ok := c.Get("a")
	require.False(t, ok, "absent key is a miss")
	c.Set("a", 1)
	c.Set("b", 2)
	c.Set("a", 3)
	v, ok := c.Get("a")
	require.True(t, ok)
	require.Equal(t, 3, v, "Set replaces")
	require.Equal(t, 2, c.Len())
	require.Empty(t, evicted, "replacing is not an eviction")

	require.True(t, c.Delete("a"))
	require.False(t, c.Delete("a"), "second Delete finds nothing")
	_, ok = c.Get("a")
	require.False(t, ok)
	require.Equal(t, map[string]cache.EvictReason{"a": cache.ReasonDeleted}, evicted)

	c.Set("c", 4)
	c.Purge()
	require.Zero(t, c.Len())
	require.Equal(t, map[string]cache.EvictReason{"a": cache.ReasonDeleted, "b": cache.ReasonDeleted, "c": cache.ReasonDeleted}, evicted)

	st := c.Stats()
	require.Equal(t, uint64(1), st.Hits)
	require.Equal(t, uint64(2), st.Misses)
	require.InDelta(t, 1.0/3, st.HitRatio(), 1e-9)
}

func TestMaxEntriesIsNeverExceeded(t *testing.T) {
	for _, max := range []int{1, 7, 64, 1000, 4097} {
		t.Run(fmt.Sprintf("MaxEntries %d", max), func(t *testing.T) {
			evictions := 0
			c := newCache(t, cache.Options[int, int]{MaxEntries: max, OnEvict: func(int, int, cache.EvictReason) { evictions++ }})
			defer c.Close()
			for i := range max * 5 {
				c.Set(i, i)
				require.LessOrEqual(t, c.Len(), max)
			}
			require.Equal(t, max, c.Len(), "a full cache stays full")
			require.Equal(t, max*4, evictions)
			require.Equal(t, uint64(max*4), c.Stats().Evictions)
		})
	}
}

func TestEvictionKeepsEntriesInUse(t *testing.T) {
	c := newCache(t, cache.Options[int, int]{MaxEntries: 1024})
	defer c.Close()
	const hot = 100
	for i := range hot {
		c.Set(i, i)
	}
	// A scan of one-off keys three times the cache's size, with the hot
	// keys read between every few writes, must not push the hot keys out.
	for i := range 3 * 1024 {
		c.Set(1_000_000+i, i)
		if i%8 == 0 {
			for k := range hot {
				c.Get(k)
			}
		}
	}
	kept := 0
	for k := range hot {
		if _, ok := c.Get(k); ok {
			kept++
		}
	}
	require.GreaterOrEqual(t, kept, hot*95/100, "CLOCK keeps referenced entries")
}

func TestTTLExpiresLazily(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var reasons []cache.EvictReason
		c := newCache(t, cache.Options[string, string]{TTL: time.Minute, OnEvict: func(_ string, _ string, r cache.EvictReason) {
			reasons = append(reasons, r)
		}})
		defer c.Close()
		c.Set("k", "v")
		c.SetWithTTL("short", "v", time.Second)
		c.SetWithTTL("forever", "v", 0)

		time.Sleep(time.Second - time.Nanosecond)
		_, ok := c.Get("short")
		require.True(t, ok, "fresh until its TTL")
		time.Sleep(time.Nanosecond)
		_, ok = c.Get("short")
		require.False(t, ok, "expired exactly at its TTL")

		time.Sleep(time.Minute - time.Second - time.Nanosecond)
		_, ok = c.Get("k")
		require.True(t, ok)
		time.Sleep(time.Nanosecond)
		_, ok = c.Get("k")
		require.False(t, ok)

		time.Sleep(24 * time.Hour)
		_, ok = c.Get("forever")
		require.True(t, ok, "SetWithTTL 0 never expires")
		require.Equal(t, 1, c.Len(), "expired entries are removed when a Get meets them")
		require.Equal(t, uint64(2), c.Stats().Expirations)
		require.Equal(t, []cache.EvictReason{cache.ReasonExpired, cache.ReasonExpired}, reasons)
	})
}

func TestExpiredEntriesAreEvictedFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[int, int]{MaxEntries: 64})
		defer c.Close()
		for i := range 63 {
			c.Set(i, i)
			c.Get(i) // referenced: CLOCK would rather keep them
		}
		c.SetWithTTL(-1, -1, time.Second)
		c.Get(-1)
		time.Sleep(time.Second)
		c.Set(100, 100)
		_, ok := c.Get(-1)
		require.False(t, ok)
		for i := range 63 {
			_, ok := c.Get(i)
			require.True(t, ok, "key %d kept: the expired entry made room", i)
		}
		require.Equal(t, uint64(1), c.Stats().Expirations)
		require.Zero(t, c.Stats().Evictions)
	})
}

func TestJitterSpreadsExpiries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		c := newCache(t, cache.Options[int, int]{MaxEntries: 4 * n, TTL: 100 * time.Second, Jitter: 0.2})
		defer c.Close()
		for i := range n {
			c.Set(i, i)
		}
		alive := func() int {
			k := 0
			for i := range n {
				if _, ok := c.Get(i); ok {
					k++
				}
			}
			return k
		}
		time.Sleep(80*time.Second - time.Nanosecond)
		require.Equal(t, n, alive(), "jitter never takes more than 20%% off the TTL")
		var curve []int
		for range 4 {
			time.Sleep(5 * time.Second)
			curve = append(curve, alive())
		}
		// Uniform over [80s, 100s]: about 75%, 50%, 25% and 0% left.
		require.InDelta(t, 750, curve[0], 100, "curve %v", curve)
		require.InDelta(t, 500, curve[1], 100, "curve %v", curve)
		require.InDelta(t, 250, curve[2], 100, "curve %v", curve)
		require.Zero(t, curve[3], "jitter never lengthens the TTL")
	})
}

func TestHugeTTLsDoNotOverflow(t *testing.T) {
	c := newCache(t, cache.Options[string, int]{TTL: math.MaxInt64, StaleIfError: math.MaxInt64, RefreshAfter: math.MaxInt64 - 1})
	defer c.Close()
	c.Set("a", 1)
	c.SetWithTTL("b", 2, math.MaxInt64)
	for _, k := range []string{"a", "b"} {
		_, ok := c.Get(k)
		require.True(t, ok, "%s: a TTL near the int64 limit means a very long life, not an instant expiry", k)
	}
}
