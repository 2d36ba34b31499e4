// Package cache_test compares github.com/asynckit/asynckit/cache with other
// Go caches on one workload: 100,000 entries pre-filled, keys drawn from a
// Zipf distribution (s = 1.01) over them, a pre-generated key trace, and
// b.RunParallel. Every library sits behind the same two-method adapter, so
// each pays the same indirect call.
package cache_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/jellydator/ttlcache/v3"
	"github.com/maypok86/otter/v2"
	gocache "github.com/patrickmn/go-cache"

	"github.com/asynckit/asynckit/cache"
)

const (
	entries  = 100_000
	traceLen = 1 << 20
)

// subject is one cache under test. get reports a hit. getOrLoad is the
// cache-through read: the library's own loading call where it has one
// (asynckit's GetOrLoad, otter's Get with a Loader, ttlcache's Get with a
// SuppressedLoader), and otherwise get, then ld on a miss, then set.
type subject interface {
	get(k uint64) bool
	set(k uint64)
	getOrLoad(ctx context.Context, k uint64, ld *loader) (uint64, error)
	close()
}

// library builds a subject holding at most capacity entries, without TTL.
type library struct {
	name string
	new  func(b *testing.B, capacity int) subject
	// bounded is false for caches without a size bound (go-cache), which
	// have no hit ratio to report.
	bounded bool
}

var libraries = []library{
	{"asynckit", newAsynckit, true},
	{"otter", newOtter, true},
	{"go-cache", newGoCache, false},
	{"ristretto", newRistretto, true},
	{"golang-lru-expirable", newGolangLRU, true},
	{"ttlcache", newTTLCache, true},
}

type asynckitCache struct{ c *cache.Cache[uint64, uint64] }

func newAsynckit(b *testing.B, capacity int) subject {
	c, err := cache.New(cache.Options[uint64, uint64]{MaxEntries: capacity})
	if err != nil {
		b.Fatal(err)
	}
	return asynckitCache{c}
}
func (a asynckitCache) get(k uint64) bool { _, ok := a.c.Get(k); return ok }
func (a asynckitCache) set(k uint64)      { a.c.Set(k, k) }
func (a asynckitCache) close()            { a.c.Close() }
func (a asynckitCache) getOrLoad(ctx context.Context, k uint64, ld *loader) (uint64, error) {
	return a.c.GetOrLoad(ctx, k, ld.fn)
}

type otterCache struct{ c *otter.Cache[uint64, uint64] }

func newOtter(b *testing.B, capacity int) subject {
	c, err := otter.New(&otter.Options[uint64, uint64]{MaximumSize: capacity})
	if err != nil {
		b.Fatal(err)
	}
	return otterCache{c}
}
func (o otterCache) get(k uint64) bool { _, ok := o.c.GetIfPresent(k); return ok }
func (o otterCache) set(k uint64)      { o.c.Set(k, k) }
func (o otterCache) close()            { o.c.StopAllGoroutines() }
func (o otterCache) getOrLoad(ctx context.Context, k uint64, ld *loader) (uint64, error) {
	return o.c.Get(ctx, k, ld)
}

// go-cache keys are strings: the adapter formats the key space once, so the
// benchmark does not measure strconv.
type goCache struct {
	c    *gocache.Cache
	keys []string
}

var stringKeys = func() []string {
	keys := make([]string, 10*entries)
	for i := range keys {
		keys[i] = strconv.Itoa(i)
	}
	return keys
}()

func newGoCache(*testing.B, int) subject {
	return goCache{gocache.New(gocache.NoExpiration, 0), stringKeys}
}
func (g goCache) get(k uint64) bool { _, ok := g.c.Get(g.keys[k]); return ok }
func (g goCache) set(k uint64)      { g.c.Set(g.keys[k], k, gocache.NoExpiration) }
func (g goCache) close()            {}
func (g goCache) getOrLoad(ctx context.Context, k uint64, ld *loader) (uint64, error) {
	if v, ok := g.c.Get(g.keys[k]); ok {
		return v.(uint64), nil
	}
	v, err := ld.Load(ctx, k)
	if err == nil {
		g.c.Set(g.keys[k], v, gocache.NoExpiration)
	}
	return v, err
}

type ristrettoCache struct {
	c *ristretto.Cache[uint64, uint64]
}

func newRistretto(b *testing.B, capacity int) subject {
	c, err := ristretto.NewCache(&ristretto.Config[uint64, uint64]{
		NumCounters: int64(capacity) * 10,
		MaxCost:     int64(capacity),
		BufferItems: 64,
		// Count entries, not bytes: cost 1 per entry against MaxCost.
		IgnoreInternalCost: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	return ristrettoCache{c}
}
func (r ristrettoCache) get(k uint64) bool { _, ok := r.c.Get(k); return ok }
func (r ristrettoCache) set(k uint64)      { r.c.Set(k, k, 1) }
func (r ristrettoCache) close()            { r.c.Close() }
func (r ristrettoCache) getOrLoad(ctx context.Context, k uint64, ld *loader) (uint64, error) {
	if v, ok := r.c.Get(k); ok {
		return v, nil
	}
	v, err := ld.Load(ctx, k)
	if err == nil {
		r.c.Set(k, v, 1)
	}
	return v, err
}

type golangLRU struct {
	c *expirable.LRU[uint64, uint64]
}

// newGolangLRU uses a zero TTL, which expirable.LRU takes as "no expiry".
// Its janitor goroutine cannot be stopped (it leaks by design in v2.0.7).
func newGolangLRU(_ *testing.B, capacity int) subject {
	return golangLRU{expirable.NewLRU[uint64, uint64](capacity, nil, 0)}
}
func (g golangLRU) get(k uint64) bool { _, ok := g.c.Get(k); return ok }
func (g golangLRU) set(k uint64)      { g.c.Add(k, k) }
func (g golangLRU) close()            {}
func (g golangLRU) getOrLoad(ctx context.Context, k uint64, ld *loader) (uint64, error) {
	if v, ok := g.c.Get(k); ok {
		return v, nil
	}
	v, err := ld.Load(ctx, k)
	if err == nil {
		g.c.Add(k, v)
	}
	return v, err
}

// ttlCache loads through one SuppressedLoader (singleflight) made with the
// cache, given to Get as an option built once, so a hit allocates nothing
// for it. The loader it calls is the one of the running benchmark.
type ttlCache struct {
	c      *ttlcache.Cache[uint64, uint64]
	ld     *atomic.Pointer[loader]
	loadOp ttlcache.Option[uint64, uint64]
}

func newTTLCache(_ *testing.B, capacity int) subject {
	t := ttlCache{c: ttlcache.New(ttlcache.WithCapacity[uint64, uint64](uint64(capacity))), ld: new(atomic.Pointer[loader])}
	t.loadOp = ttlcache.WithLoader[uint64, uint64](ttlcache.NewSuppressedLoader[uint64, uint64](
		ttlcache.LoaderFunc[uint64, uint64](func(c *ttlcache.Cache[uint64, uint64], k uint64) *ttlcache.Item[uint64, uint64] {
			v, err := t.ld.Load().Load(context.Background(), k)
			if err != nil {
				return nil
			}
			return c.Set(k, v, ttlcache.NoTTL)
		}), nil))
	return t
}
func (t ttlCache) get(k uint64) bool { return t.c.Get(k) != nil }
func (t ttlCache) set(k uint64)      { t.c.Set(k, k, ttlcache.NoTTL) }
func (t ttlCache) close()            {}
func (t ttlCache) getOrLoad(_ context.Context, k uint64, ld *loader) (uint64, error) {
	if t.ld.Load() != ld {
		t.ld.Store(ld)
	}
	it := t.c.Get(k, t.loadOp)
	if it == nil {
		return 0, errNotLoaded
	}
	return it.Value(), nil
}

var errNotLoaded = errors.New("ttlcache: loader returned no item")

func zipfTrace(n int, keySpace uint64, seed uint64) []uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), 1.01, 1, keySpace-1)
	trace := make([]uint64, n)
	for i := range trace {
		trace[i] = z.Uint64()
	}
	return trace
}

var trace = zipfTrace(traceLen, entries, 42)

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/op: CPU time spent per operation across all
// goroutines. On a machine shared with other work, wall-clock ns/op swings
// with the load while CPU time per operation stays comparable.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

var cursor atomic.Uint64

// traceStart gives each RunParallel goroutine its own place in the trace.
func traceStart() int { return int(cursor.Add(traceLen/16+7919)) & (traceLen - 1) }

// filled returns lib's cache with every key of the key space in it. The
// bound is twice the key space so that bounded caches hold all of it.
func filled(b *testing.B, lib library) subject {
	s := lib.new(b, 2*entries)
	b.Cleanup(s.close)
	r, isRistretto := s.(ristrettoCache)
	for k := range uint64(entries) {
		s.set(k)
		// ristretto drops a Set when its buffer is full; let it drain.
		if isRistretto && k%1000 == 999 {
			r.c.Wait()
		}
	}
	if isRistretto {
		r.c.Wait()
	}
	return s
}

func BenchmarkGetHitParallel(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			s := filled(b, lib)
			var misses atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				i, n := traceStart(), int64(0)
				for pb.Next() {
					if !s.get(trace[i]) {
						n++
					}
					i = (i + 1) & (traceLen - 1)
				}
				misses.Add(n)
			})
			reportCPU(b, cpu)
			// ristretto's admission policy may refuse part of the fill; the
			// miss rate shows how much of the "hit" benchmark was not one.
			b.ReportMetric(100*float64(misses.Load())/float64(b.N), "miss%")
		})
	}
}

func BenchmarkSetParallel(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			s := filled(b, lib)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				i := traceStart()
				for pb.Next() {
					s.set(trace[i])
					i = (i + 1) & (traceLen - 1)
				}
			})
			reportCPU(b, cpu)
		})
	}
}

func BenchmarkMixed90_10(b *testing.B) {
	for _, lib := range libraries {
		b.Run(lib.name, func(b *testing.B) {
			s := filled(b, lib)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				i := traceStart()
				for pb.Next() {
					if i%10 == 0 {
						s.set(trace[i])
					} else {
						s.get(trace[i])
					}
					i = (i + 1) & (traceLen - 1)
				}
			})
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkHitRatio replays a Zipf trace over 1,000,000 keys through each
// bounded cache sized at 10% of the key space, setting every missed key, and
// reports the hit ratio (hit%). One iteration is one full replay.
func BenchmarkHitRatio(b *testing.B) {
	const keySpace = 10 * entries
	ratioTrace := zipfTrace(traceLen, keySpace, 7)
	for _, lib := range libraries {
		if !lib.bounded {
			continue
		}
		b.Run(lib.name, func(b *testing.B) {
			var ratio float64
			for b.Loop() {
				s := lib.new(b, keySpace/10)
				hits := 0
				for _, k := range ratioTrace {
					if s.get(k) {
						hits++
					} else {
						s.set(k)
					}
				}
				s.close()
				ratio = float64(hits) / float64(len(ratioTrace))
			}
			b.ReportMetric(100*ratio, "hit%")
		})
	}
}
