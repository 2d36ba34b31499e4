package ratelimit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/asynckit/asynckit/ratelimit"
)

// BenchmarkAllowParallel measures a keyed Allow from every core over a
// spread of keys, for each in-memory limiter and, as the yardstick, for an
// x/time/rate.Limiter per key held in a sync.Map.
func BenchmarkAllowParallel(b *testing.B) {
	for _, nkeys := range []int{10_000, 1_000_000} {
		keys := make([]string, nkeys)
		for i := range keys {
			keys[i] = fmt.Sprintf("user:%d", i)
		}
		for _, ml := range memoryLimiters {
			b.Run(fmt.Sprintf("%s/keys=%d", ml.name, nkeys), func(b *testing.B) {
				l, err := ml.new(benchLimit(nkeys), ratelimit.Options{MaxKeys: nkeys})
				if err != nil {
					b.Fatal(err)
				}
				benchParallel(b, keys, func(ctx context.Context, key string) {
					if _, err := l.AllowN(ctx, key, 1); err != nil {
						b.Error(err)
					}
				})
			})
		}
		b.Run(fmt.Sprintf("xtimerate-syncmap/keys=%d", nkeys), func(b *testing.B) {
			lim := benchLimit(nkeys)
			var m sync.Map
			benchParallel(b, keys, func(_ context.Context, key string) {
				v, ok := m.Load(key)
				if !ok {
					v, _ = m.LoadOrStore(key, rate.NewLimiter(rate.Limit(float64(lim.Rate)/lim.Period.Seconds()), lim.Burst))
				}
				v.(*rate.Limiter).Allow()
			})
		})
	}
}

// benchLimit is the per-key limit for a benchmark over nkeys keys: 8 per
// nkeys microseconds (10 ms for 10,000 keys), with a burst of 8. At 20 to
// 200 ns per call a key comes round on average every 0.2 to 2 µs × nkeys,
// near its 1.25 µs × nkeys interval, so calls are a mix of admissions and
// denials on a fast or a slow machine alike; a key never idles for a whole
// Period, so no limiter drops and re-creates keys, and the sliding log's
// per-key ring stays small (8 timestamps).
func benchLimit(nkeys int) ratelimit.Limit {
	return ratelimit.Limit{Rate: 8, Period: time.Duration(nkeys) * time.Microsecond, Burst: 8}
}

var benchSeed atomic.Uint64

func benchParallel(b *testing.B, keys []string, allow func(context.Context, string)) {
	ctx := context.Background()
	// Touch every key once so the loop measures the steady state.
	for _, k := range keys {
		allow(ctx, k)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		// Each goroutine draws its own random key for every call. Walking
		// one fixed scattered order from random starting points, as this
		// did once, made every key alternate between the cores at a
		// distance set by where the walks happened to start, and results
		// varied by 2x from run to run.
		r := rand.New(rand.NewPCG(benchSeed.Add(1), uint64(time.Now().UnixNano())))
		for pb.Next() {
			allow(ctx, keys[r.IntN(len(keys))])
		}
	})
	// Wall time per op flatters nobody on a shared machine; the process's
	// CPU time per op (user and system, all threads, GC included) is what a
	// decision costs whatever else the cores are doing.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime returns the CPU time this process has used, in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
