// Package ratelimit_test compares asynckit's limiters with the keyed rate
// limiters Go services commonly use, on the same workload in one run.
package ratelimit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sethvargo/go-limiter/memorystore"
	"github.com/throttled/throttled/v2"
	throttledmem "github.com/throttled/throttled/v2/store/memstore"
	ulule "github.com/ulule/limiter/v3"
	ululemem "github.com/ulule/limiter/v3/drivers/store/memory"
	"golang.org/x/time/rate"

	"github.com/asynckit/asynckit/ratelimit"
)

// The in-memory workload: 10,000 keys, each limited to 8 per 10 ms with a
// burst of 8, each call from every core for a random one of them. At 20 to 200
// ns per call a key comes round on average every 0.2 to 2 ms, near its 1.25 ms
// interval, so calls are a mix of admissions and denials on a fast or a
// slow machine alike, and no key idles for a whole Period (which would let
// a capped limiter drop it and measure re-creating keys instead).
//
// With 1,000,000 keys the Period grows in step (8 per second), so that a
// key still comes round near its interval and the mix stays the same; what
// changes is that the limiters' tables no longer fit in the CPU caches.
const nkeys = 10_000

var (
	limit = ratelimit.Limit{Rate: 8, Period: 10 * time.Millisecond, Burst: 8}
	keys  = makeKeys(nkeys)
)

// keyCounts are the table sizes of BenchmarkAllowParallel.
var keyCounts = []int{nkeys, 1_000_000}

func makeKeys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = "user:" + strconv.Itoa(i)
	}
	return k
}

// limitFor is the workload's limit with n keys: limit with its Period
// scaled by n/nkeys.
func limitFor(n int) ratelimit.Limit {
	l := limit
	l.Period = limit.Period * time.Duration(n/nkeys)
	return l
}

// allowFunc is one library's keyed Allow, reduced to what the benchmark
// needs.
type allowFunc func(ctx context.Context, key string) bool

// peer is one in-memory keyed limiter: new returns its Allow for at most n
// keys under lim.
type peer struct {
	name string
	new  func(b *testing.B, lim ratelimit.Limit, n int) allowFunc
}

var peers = []peer{
	{"asynckit-GCRA", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		l, err := ratelimit.NewGCRA(limit, ratelimit.Options{MaxKeys: n})
		must(b, err)
		return func(ctx context.Context, key string) bool {
			res, _ := l.AllowN(ctx, key, 1)
			return res.Allowed
		}
	}},
	{"asynckit-SlidingWindow", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		l, err := ratelimit.NewSlidingWindow(limit, ratelimit.Options{MaxKeys: n})
		must(b, err)
		return func(ctx context.Context, key string) bool {
			res, _ := l.AllowN(ctx, key, 1)
			return res.Allowed
		}
	}},
	{"xtimerate-syncmap", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		var m sync.Map
		every := rate.Limit(float64(limit.Rate) / limit.Period.Seconds())
		return func(_ context.Context, key string) bool {
			v, ok := m.Load(key)
			if !ok {
				v, _ = m.LoadOrStore(key, rate.NewLimiter(every, limit.Burst))
			}
			return v.(*rate.Limiter).Allow()
		}
	}},
	// Two rows are references, not libraries. bare-gcra is an exact
	// GCRA with nothing around it: a key's TAT in a Go map filled
	// before the run and only read during it (no insert, cap, expiry
	// or lock), one monotonic clock read and one compare-and-swap.
	// floor-clock is that clock read alone, beside the key draw: the
	// one cost every exact limiter pays on every call.
	{"bare-gcra", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		iv := int64(limit.Interval())
		tau := iv * int64(limit.Burst)
		epoch := time.Now()
		m := make(map[string]*bareTAT, n)
		for _, k := range makeKeys(n) {
			m[k] = new(bareTAT)
		}
		return func(_ context.Context, key string) bool {
			t := &m[key].tat
			now := int64(time.Since(epoch))
			for {
				old := t.Load()
				next := max(old, now) + iv
				if next-tau > now {
					return false
				}
				if t.CompareAndSwap(old, next) {
					return true
				}
			}
		}
	}},
	{"floor-clock", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		epoch := time.Now()
		return func(_ context.Context, key string) bool {
			return int64(time.Since(epoch)) > int64(len(key))
		}
	}},
	{"sethvargo-memorystore", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		s, err := memorystore.New(&memorystore.Config{Tokens: uint64(limit.Rate), Interval: limit.Period})
		must(b, err)
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		return func(ctx context.Context, key string) bool {
			_, _, _, ok, _ := s.Take(ctx, key)
			return ok
		}
	}},
	{"ulule-memory", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		l := ulule.New(ululemem.NewStore(), ulule.Rate{Period: limit.Period, Limit: int64(limit.Rate)})
		return func(ctx context.Context, key string) bool {
			c, _ := l.Get(ctx, key)
			return !c.Reached
		}
	}},
	{"throttled-gcra-memstore", func(b *testing.B, limit ratelimit.Limit, n int) allowFunc {
		st, err := throttledmem.NewCtx(2 * n)
		must(b, err)
		rl, err := throttled.NewGCRARateLimiterCtx(st, throttled.RateQuota{
			MaxRate: throttled.PerDuration(limit.Rate, limit.Period), MaxBurst: limit.Burst - 1})
		must(b, err)
		return func(ctx context.Context, key string) bool {
			limited, _, _ := rl.RateLimitCtx(ctx, key, 1)
			return !limited
		}
	}},
}

// BenchmarkAllowParallel is a keyed Allow from every core, each call on a
// random key, with 10,000 and with 1,000,000 keys (10,000 only with
// -short). Each limiter is made and given every key once, before its first
// timed run, and kept for the rounds that follow.
func BenchmarkAllowParallel(b *testing.B) {
	for _, n := range keyCounts {
		if testing.Short() && n > nkeys {
			continue // filling a million keys into each limiter takes most of a minute
		}
		keys := makeKeys(n)
		lim := limitFor(n)
		for _, p := range peers {
			ctx := context.Background()
			var allow allowFunc
			parent := b
			b.Run(fmt.Sprintf("keys=%d/%s", n, p.name), func(b *testing.B) {
				// Made on the first round only, and on the parent, whose
				// cleanup runs after the last round: sub-benchmarks that
				// -bench leaves out cost nothing.
				if allow == nil {
					allow = p.new(parent, lim, n)
					for _, k := range keys {
						allow(ctx, k)
					}
				}
				var seed atomic.Uint64
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cpuTime()
				b.RunParallel(func(pb *testing.PB) {
					// A random key per call for each goroutine: a fixed order
					// walked from random starting points makes the cores trade
					// every key at a distance set by chance, and the results
					// vary by 2x from run to run.
					r := rand.New(rand.NewPCG(seed.Add(1), 42))
					for pb.Next() {
						allow(ctx, keys[r.IntN(n)])
					}
				})
				b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// bareTAT is bare-gcra's per-key state, alone on its own pair of cache
// lines as asynckit's GCRA keeps it, so that neighbouring keys do not
// share a line.
type bareTAT struct {
	tat atomic.Int64
	_   [120]byte
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// bytesKeys is how many keys BenchmarkBytesPerKey gives each limiter.
const bytesKeys = 100_000

// BenchmarkBytesPerKey gives a new limiter of each kind one call on each
// of 100,000 keys and reports how much the live heap grew per key
// (bytes/key), after a full collection before and after, with every key
// still held. The key strings
// exist beforehand and are not counted; a limiter that copies them pays
// for its copies. One iteration is one limiter; run it with -benchtime 1x.
func BenchmarkBytesPerKey(b *testing.B) {
	keys := makeKeys(bytesKeys)
	// A Period far longer than the run, so that no key is idle long
	// enough to be dropped before it is counted.
	lim := ratelimit.Limit{Rate: 8, Period: time.Hour, Burst: 8}
	for _, p := range peers {
		if p.name == "floor-clock" {
			continue // keeps no state
		}
		b.Run(p.name, func(b *testing.B) {
			ctx := context.Background()
			var perKey float64
			for b.Loop() {
				before := liveHeap()
				allow := p.new(b, lim, bytesKeys)
				for _, k := range keys {
					allow(ctx, k)
				}
				after := liveHeap()
				runtime.KeepAlive(allow)
				perKey = float64(int64(after)-int64(before)) / bytesKeys
			}
			b.ReportMetric(perKey, "bytes/key")
		})
	}
}

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
