package ratelimit_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

// TestMemoryIsBoundedByMaxKeys sends distinct keys through a limiter capped
// at 100,000 keys: 300,000 normally, 5,000,000 with ASYNCKIT_SOAK=1. The key
// count must sit exactly at the cap, and the heap must stop growing: once
// the first 200,000 keys have gone through (evicted keys' nodes are
// recycled or, for GCRA, collected, so the heap holds little more after
// the cap), the heap at the end must be the same to within 10%, and under
// 512 bytes per key held (a SlidingLog of 10 per hour keeps 80 bytes of
// timestamps per key, a Concurrency of 10 160 bytes of slots, a
// TokenBucket a whole x/time/rate.Limiter).
func TestMemoryIsBoundedByMaxKeys(t *testing.T) {
	total := 300_000
	if os.Getenv("ASYNCKIT_SOAK") == "1" {
		total = 5_000_000
	}
	const maxKeys = 100_000
	for _, tc := range []struct {
		name string
		new  func() (ratelimit.Limiter, func() int, error)
	}{
		{"GCRA", func() (ratelimit.Limiter, func() int, error) {
			g, err := ratelimit.NewGCRA(ratelimit.PerHour(10), ratelimit.Options{MaxKeys: maxKeys})
			return g, g.Len, err
		}},
		{"TokenBucket", func() (ratelimit.Limiter, func() int, error) {
			b, err := ratelimit.NewTokenBucket(ratelimit.PerHour(10), ratelimit.Options{MaxKeys: maxKeys})
			return b, b.Len, err
		}},
		{"SlidingLog", func() (ratelimit.Limiter, func() int, error) {
			l, err := ratelimit.NewSlidingLog(ratelimit.PerHour(10), ratelimit.Options{MaxKeys: maxKeys})
			return l, l.Len, err
		}},
		{"SlidingWindow", func() (ratelimit.Limiter, func() int, error) {
			w, err := ratelimit.NewSlidingWindow(ratelimit.PerHour(10), ratelimit.Options{MaxKeys: maxKeys})
			return w, w.Len, err
		}},
		{"Concurrency", func() (ratelimit.Limiter, func() int, error) {
			c, err := ratelimit.NewConcurrency(10, time.Hour, ratelimit.Options{MaxKeys: maxKeys})
			return c, c.Len, err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := heap()
			l, length, err := tc.new()
			require.NoError(t, err)
			ctx := context.Background()
			buf := []byte("client-")
			send := func(from, to int) {
				for i := from; i < to; i++ {
					key := string(strconv.AppendInt(buf, int64(i), 10))
					if _, err := l.AllowN(ctx, key, 1); err != nil {
						t.Fatal(err)
					}
				}
			}
			send(0, maxKeys)
			require.Equal(t, maxKeys, length())
			atCap := heap()
			send(maxKeys, 2*maxKeys)
			warm := heap()
			send(2*maxKeys, total)
			require.Equal(t, maxKeys, length())
			atEnd := heap()
			perKey := float64(atEnd-base) / maxKeys
			t.Logf("%s: %d distinct keys, cap %d: heap %d B at the cap, %d B after %d keys, %d B at the end; %.0f B per key held",
				tc.name, total, maxKeys, atCap-base, warm-base, 2*maxKeys, atEnd-base, perKey)
			require.Less(t, float64(atEnd-base), 1.1*float64(warm-base))
			require.Less(t, perKey, 512.0)
			runtime.KeepAlive(l)
		})
	}
}

func heap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
