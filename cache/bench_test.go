package cache_test

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynckit/asynckit/cache"
)

// The workload matches bench/cache, where the same benchmarks run against
// other caches: 100,000 entries pre-filled, keys drawn from a Zipf
// distribution (s = 1.01) over them, a pre-generated trace so that the
// random generator is not measured, and every goroutine starting at its own
// place in the trace.
const (
	benchEntries  = 100_000
	benchTraceLen = 1 << 20
)

func zipfTrace(n int, keySpace uint64, seed uint64) []uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), 1.01, 1, keySpace-1)
	trace := make([]uint64, n)
	for i := range trace {
		trace[i] = z.Uint64()
	}
	return trace
}

// benchTrace is made on first use, so that plain test runs do not pay for it.
var benchTrace []uint64

func filledCache(b *testing.B, opts cache.Options[uint64, uint64]) *cache.Cache[uint64, uint64] {
	b.Helper()
	if benchTrace == nil {
		benchTrace = zipfTrace(benchTraceLen, benchEntries, 42)
	}

	opts.MaxEntries = 2 * benchEntries // all of the key space fits: every Get is a hit
	c, err := cache.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	for i := range uint64(benchEntries) {
		c.Set(i, i)
	}
	return c
}

var start atomic.Uint64

// traceCursor gives each RunParallel goroutine its own start in the trace.
func traceCursor() int { return int(start.Add(benchTraceLen/16+7919)) & (benchTraceLen - 1) }

func BenchmarkGetHitParallel(b *testing.B) {
	c := filledCache(b, cache.Options[uint64, uint64]{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := traceCursor()
		for pb.Next() {
			if _, ok := c.Get(benchTrace[i]); !ok {
				b.Error("miss on a pre-filled key")
				return
			}
			i = (i + 1) & (benchTraceLen - 1)
		}
	})
}

// BenchmarkGetHitParallelTTL is BenchmarkGetHitParallel with a TTL on every
// entry, which makes each Get read the clock.
func BenchmarkGetHitParallelTTL(b *testing.B) {
	c := filledCache(b, cache.Options[uint64, uint64]{TTL: time.Hour})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := traceCursor()
		for pb.Next() {
			if _, ok := c.Get(benchTrace[i]); !ok {
				b.Error("miss on a pre-filled key")
				return
			}
			i = (i + 1) & (benchTraceLen - 1)
		}
	})
}

func BenchmarkSetParallel(b *testing.B) {
	c := filledCache(b, cache.Options[uint64, uint64]{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := traceCursor()
		for pb.Next() {
			c.Set(benchTrace[i], uint64(i))
			i = (i + 1) & (benchTraceLen - 1)
		}
	})
}

func BenchmarkMixed90_10(b *testing.B) {
	c := filledCache(b, cache.Options[uint64, uint64]{})
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := traceCursor()
		for pb.Next() {
			if i%10 == 0 {
				c.Set(benchTrace[i], uint64(i))
			} else {
				c.Get(benchTrace[i])
			}
			i = (i + 1) & (benchTraceLen - 1)
		}
	})
}

func BenchmarkGetOrLoadHit(b *testing.B) {
	c := filledCache(b, cache.Options[uint64, uint64]{})
	load := func(_ context.Context, k uint64) (uint64, error) { return k, nil }
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := traceCursor()
		for pb.Next() {
			if _, err := c.GetOrLoad(ctx, benchTrace[i], load); err != nil {
				b.Error(err)
				return
			}
			i = (i + 1) & (benchTraceLen - 1)
		}
	})
}

// BenchmarkHitRatioZipf replays a Zipf trace over 1,000,000 keys through a
// cache holding 10% of them, loading on every miss, and reports the hit
// ratio the eviction policy achieves.
func BenchmarkHitRatioZipf(b *testing.B) {
	const keySpace = 1_000_000
	trace := zipfTrace(benchTraceLen, keySpace, 7)
	b.ReportAllocs()
	var ratio float64
	for b.Loop() {
		c, err := cache.New(cache.Options[uint64, uint64]{MaxEntries: keySpace / 10})
		if err != nil {
			b.Fatal(err)
		}
		var hits int
		for _, k := range trace {
			if _, ok := c.Get(k); ok {
				hits++
			} else {
				c.Set(k, k)
			}
		}
		c.Close()
		ratio = float64(hits) / float64(len(trace))
	}
	b.ReportMetric(100*ratio, "hit%")
}
