package rediscache_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/asynckit/asynckit/cache"
	"github.com/asynckit/asynckit/cache/rediscache"
	"github.com/asynckit/asynckit/internal/testenv"
)

// BenchmarkGetOrLoadLocalHit measures the two-tier cache when the local
// tier answers: the cost it adds over cache.Cache is the key's conversion
// to a string.
func BenchmarkGetOrLoadLocalHit(b *testing.B) {
	client, ns := testenv.Redis(b)
	c, err := rediscache.New(context.Background(), rediscache.Options[string, int]{
		Client: client, Namespace: ns, TTL: time.Minute,
		Local: cache.Options[string, int]{MaxEntries: 10_000},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	keys := make([]string, 1000)
	load := func(_ context.Context, k string) (int, error) { return len(k), nil }
	ctx := context.Background()
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
		if _, err := c.GetOrLoad(ctx, keys[i], load); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := c.GetOrLoad(ctx, keys[i%len(keys)], load); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	if st := c.Stats(); st.Loads != uint64(len(keys)) {
		b.Fatalf("%d loads: the benchmark missed the local tier", st.Loads)
	}
}
