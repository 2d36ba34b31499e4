// Package ratelimit_test compares asynckit's limiters with the keyed rate
// limiters Go services commonly use, on the same workload in one run.
package ratelimit_test

import (
	"context"
	"math/rand/v2"
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
const nkeys = 10_000

var (
	limit = ratelimit.Limit{Rate: 8, Period: 10 * time.Millisecond, Burst: 8}
	keys  = func() []string {
		k := make([]string, nkeys)
		for i := range k {
			k[i] = "user:" + strconv.Itoa(i)
		}
		return k
	}()
)

// allowFunc is one library's keyed Allow, reduced to what the benchmark
// needs.
type allowFunc func(ctx context.Context, key string) bool

func BenchmarkAllowParallel(b *testing.B) {
	for _, peer := range []struct {
		name string
		new  func(b *testing.B) allowFunc
	}{
		{"asynckit-GCRA", func(b *testing.B) allowFunc {
			l, err := ratelimit.NewGCRA(limit, ratelimit.Options{MaxKeys: nkeys})
			must(b, err)
			return func(ctx context.Context, key string) bool {
				res, _ := l.AllowN(ctx, key, 1)
				return res.Allowed
			}
		}},
		{"asynckit-SlidingWindow", func(b *testing.B) allowFunc {
			l, err := ratelimit.NewSlidingWindow(limit, ratelimit.Options{MaxKeys: nkeys})
			must(b, err)
			return func(ctx context.Context, key string) bool {
				res, _ := l.AllowN(ctx, key, 1)
				return res.Allowed
			}
		}},
		{"xtimerate-syncmap", func(b *testing.B) allowFunc {
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
		{"bare-gcra", func(b *testing.B) allowFunc {
			iv := int64(limit.Interval())
			tau := iv * int64(limit.Burst)
			epoch := time.Now()
			m := make(map[string]*bareTAT, nkeys)
			for _, k := range keys {
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
		{"floor-clock", func(b *testing.B) allowFunc {
			epoch := time.Now()
			return func(_ context.Context, key string) bool {
				return int64(time.Since(epoch)) > int64(len(key))
			}
		}},
		{"sethvargo-memorystore", func(b *testing.B) allowFunc {
			s, err := memorystore.New(&memorystore.Config{Tokens: uint64(limit.Rate), Interval: limit.Period})
			must(b, err)
			b.Cleanup(func() { _ = s.Close(context.Background()) })
			return func(ctx context.Context, key string) bool {
				_, _, _, ok, _ := s.Take(ctx, key)
				return ok
			}
		}},
		{"ulule-memory", func(b *testing.B) allowFunc {
			l := ulule.New(ululemem.NewStore(), ulule.Rate{Period: limit.Period, Limit: int64(limit.Rate)})
			return func(ctx context.Context, key string) bool {
				c, _ := l.Get(ctx, key)
				return !c.Reached
			}
		}},
		{"throttled-gcra-memstore", func(b *testing.B) allowFunc {
			st, err := throttledmem.NewCtx(2 * nkeys)
			must(b, err)
			rl, err := throttled.NewGCRARateLimiterCtx(st, throttled.RateQuota{
				MaxRate: throttled.PerSec(limit.Rate * int(time.Second/limit.Period)), MaxBurst: limit.Burst - 1})
			must(b, err)
			return func(ctx context.Context, key string) bool {
				limited, _, _ := rl.RateLimitCtx(ctx, key, 1)
				return !limited
			}
		}},
	} {
		b.Run(peer.name, func(b *testing.B) {
			allow := peer.new(b)
			ctx := context.Background()
			for _, k := range keys {
				allow(ctx, k)
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
					allow(ctx, keys[r.IntN(nkeys)])
				}
			})
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
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
