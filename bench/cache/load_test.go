package cache_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loader is the source of truth behind a cache-through read: it counts its
// calls and takes delay for each. It is an otter.Loader itself, and fn is
// the same call as a cache.Loader, made once so that passing it allocates
// nothing.
type loader struct {
	delay time.Duration
	calls atomic.Int64
	fn    func(ctx context.Context, k uint64) (uint64, error)
}

func newLoader(delay time.Duration) *loader {
	ld := &loader{delay: delay}
	ld.fn = ld.Load
	return ld
}

// Load returns k as its value after delay.
func (ld *loader) Load(_ context.Context, k uint64) (uint64, error) {
	ld.calls.Add(1)
	if ld.delay > 0 {
		time.Sleep(ld.delay)
	}
	return k, nil
}

// Reload makes loader an otter.Loader; these benchmarks never refresh.
func (ld *loader) Reload(ctx context.Context, k, _ uint64) (uint64, error) { return ld.Load(ctx, k) }

// BenchmarkGetOrLoadHit is the cache-through read of a present key, in
// parallel over the Zipf trace of the filled cache: asynckit's GetOrLoad,
// otter's Get with a Loader, ttlcache's Get with a SuppressedLoader, and
// get-then-load for the caches without a loading call. The loader never
// runs (loads counts any call it had to make).
func BenchmarkGetOrLoadHit(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			s := filled(b, lib)
			ld := newLoader(0)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				i := traceStart()
				for pb.Next() {
					if _, err := s.getOrLoad(ctx, trace[i], ld); err != nil {
						b.Error(err)
						return
					}
					i = (i + 1) & (traceLen - 1)
				}
			})
			reportCPU(b, cpu)
			b.ReportMetric(float64(ld.calls.Load())/float64(b.N), "loads/op")
		})
	}
}

// stampedeCallers is how many goroutines miss the same key at once.
const stampedeCallers = 1000

// BenchmarkStampede releases 1,000 goroutines at once on one key that is
// not in the cache, each making the cache-through read, with a loader that
// takes 1 ms (a fast database query). One iteration is one stampede on a
// new key. loader-calls/op is how many times the source of truth was asked:
// 1 for a cache that runs one load per key, up to 1,000 for one that does
// not.
func BenchmarkStampede(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			s := lib.new(b, 2*entries)
			b.Cleanup(s.close)
			ld := newLoader(time.Millisecond)
			ctx := context.Background()
			var key uint64
			var failed atomic.Pointer[error]
			b.ReportAllocs()
			for b.Loop() {
				key++
				start := make(chan struct{})
				var ready, wg sync.WaitGroup
				ready.Add(stampedeCallers)
				for range stampedeCallers {
					wg.Go(func() {
						ready.Done()
						<-start
						v, err := s.getOrLoad(ctx, key, ld)
						if err == nil && v != key {
							err = fmt.Errorf("key %d: got %d", key, v)
						}
						if err != nil {
							failed.Store(&err)
						}
					})
				}
				ready.Wait()
				close(start)
				wg.Wait()
			}
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
			b.ReportMetric(float64(ld.calls.Load())/float64(b.N), "loader-calls/op")
		})
	}
}
