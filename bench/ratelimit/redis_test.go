package ratelimit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	ulule "github.com/ulule/limiter/v3"
	ululeredis "github.com/ulule/limiter/v3/drivers/store/redis"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/redisrate"
)

// redisShape is one way to set up the Redis comparison. Each subject gets
// a client of its own, made the same way, and the same keys and limit.
type redisShape struct {
	name string
	// client makes a client for the server that opts (from REDIS_URL)
	// names.
	client func(opts *redis.Options) *redis.Client
	// rate is every subject's limit per second, with a burst of as many.
	rate int
	// keys are the keys the callers use.
	keys []string
	// random makes each call draw a random key; otherwise each caller
	// walks the keys in order from its own starting point.
	random bool
}

// redisShapes are the two shapes the comparison has been measured in.
//
// walk is this module's first one: a client from redis.ParseURL, 1,000 a
// second, and keys "user:0" to "user:9999" walked in order. independent is
// the shape of an independent harness that reported different figures: a
// default redis.NewClient(&redis.Options{Addr}), a limit high enough that
// every call is admitted (1,000,000 a second, the finest redisrate
// accepts), and each call on a random one of a fixed sample of 10,000
// keys. The callers and the loading of the script before the timer starts
// are the same in both.
var redisShapes = []redisShape{
	{
		name:   "walk",
		client: func(opts *redis.Options) *redis.Client { return redis.NewClient(opts) },
		rate:   1000,
		keys:   keys,
	},
	{
		name:   "independent",
		client: func(opts *redis.Options) *redis.Client { return redis.NewClient(&redis.Options{Addr: opts.Addr}) },
		rate:   1_000_000,
		keys: func() []string {
			r := rand.New(rand.NewPCG(1, 2))
			k := make([]string, nkeys)
			for i := range k {
				k[i] = "key:" + strconv.FormatUint(r.Uint64(), 36)
			}
			return k
		}(),
		random: true,
	},
}

// redisSubject is one limiter compared on Redis: new returns its Allow on
// client c, with every key under prefix.
type redisSubject struct {
	name string
	new  func(b *testing.B, c *redis.Client, prefix string, rate int) allowFunc
}

// redisrateGCRA returns the redisrate GCRA subject with options o.
func redisrateGCRA(o redisrate.Options) func(b *testing.B, c *redis.Client, prefix string, rate int) allowFunc {
	return func(b *testing.B, c *redis.Client, prefix string, rate int) allowFunc {
		o.Prefix = prefix
		l, err := redisrate.NewGCRA(c, ratelimit.PerSecond(rate), o)
		must(b, err)
		return func(ctx context.Context, key string) bool {
			res, err := l.AllowN(ctx, key, 1)
			if err != nil {
				b.Error(err)
			}
			return res.Allowed
		}
	}
}

// redisRate returns go-redis/redis_rate as a subject, limited to
// limit(rate) decisions a second.
func redisRate(limit func(rate int) int) func(b *testing.B, c *redis.Client, prefix string, rate int) allowFunc {
	return func(b *testing.B, c *redis.Client, prefix string, rate int) allowFunc {
		l := redis_rate.NewLimiter(c)
		lim := redis_rate.PerSecond(limit(rate))
		return func(ctx context.Context, key string) bool {
			res, err := l.Allow(ctx, prefix+key, lim)
			if err != nil {
				b.Error(err)
				return false
			}
			return res.Allowed > 0
		}
	}
}

var redisSubjects = []redisSubject{
	{"asynckit-redisrate-GCRA", redisrateGCRA(redisrate.Options{})},
	{"asynckit-redisrate-GCRA-batched", redisrateGCRA(redisrate.Options{Batch: 64})},
	{"go-redis-redis_rate", redisRate(func(rate int) int { return rate })},
	// A reference row, not a comparison: redis_rate given a limit of a
	// billion a second. Its GCRA keeps time in float seconds since 2017,
	// where an emission interval below about 1e-8 s is lost in rounding:
	// the script then finds nothing to write, and neither counts nor
	// limits, but costs about 4.5 µs less Redis CPU. A harness that gives
	// each library "a limit high enough that every call is admitted"
	// measures this path for redis_rate (redisrate accepts at most 1e6/s).
	{"go-redis-redis_rate-at-1e9", redisRate(func(int) int { return 1_000_000_000 })},
	{"ulule-limiter-redis", func(b *testing.B, c *redis.Client, prefix string, rate int) allowFunc {
		store, err := ululeredis.NewStoreWithOptions(c, ulule.StoreOptions{Prefix: prefix})
		must(b, err)
		l := ulule.New(store, ulule.Rate{Period: time.Second, Limit: int64(rate)})
		return func(ctx context.Context, key string) bool {
			res, err := l.Get(ctx, key)
			if err != nil {
				b.Error(err)
				return false
			}
			return !res.Reached
		}
	}},
}

// BenchmarkRedisAllow compares one decision against the real Redis named by
// REDIS_URL, in both shapes of redisShapes, with 16 and 64 concurrent
// callers: asynckit's redisrate GCRA, sending each decision on its own and
// batched (Options.Batch), go-redis/redis_rate (also GCRA in Lua) and
// ulule/limiter's Redis store (a fixed window: INCRBY and PEXPIRE in Lua).
// It reports decisions per second and the share of calls admitted.
func BenchmarkRedisAllow(b *testing.B) {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		b.Skip("set REDIS_URL=redis://127.0.0.1:6379/0 to compare Redis limiters")
	}
	opts, err := redis.ParseURL(url)
	must(b, err)
	run := time.Now().UnixNano()
	for _, shape := range redisShapes {
		for _, callers := range []int{16, 64} {
			for i, subject := range redisSubjects {
				b.Run(fmt.Sprintf("%s/callers=%d/%s", shape.name, callers, subject.name), func(b *testing.B) {
					c := shape.client(opts)
					b.Cleanup(func() { _ = c.Close() })
					prefix := fmt.Sprintf("akbench_%d_%d:", run, i)
					allow := subject.new(b, c, prefix, shape.rate)
					benchmarkRedis(b, c, shape, callers, allow)
				})
			}
		}
	}
}

func benchmarkRedis(b *testing.B, c *redis.Client, shape redisShape, callers int, allow allowFunc) {
	ctx := context.Background()
	allow(ctx, shape.keys[0]) // load the script
	var seed, next atomic.Uint64
	var admitted atomic.Int64
	b.SetParallelism(max(callers/runtime.GOMAXPROCS(0), 1))
	b.ReportAllocs()
	serverCPU := redisCPU(b, c)
	b.ResetTimer()
	cpu := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 42))
		i := int(next.Add(7919))
		n := int64(0)
		for pb.Next() {
			var key string
			if shape.random {
				key = shape.keys[r.IntN(len(shape.keys))]
			} else {
				key = shape.keys[i%len(shape.keys)]
				i++
			}
			if allow(ctx, key) {
				n++
			}
		}
		admitted.Add(n)
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
	b.StopTimer()
	b.ReportMetric(float64(redisCPU(b, c)-serverCPU)/float64(b.N), "redis-cpu-ns/op")
	b.ReportMetric(100*float64(admitted.Load())/float64(b.N), "admitted%")
}

// redisCPU returns the CPU time the Redis server has used so far (user and
// system, from INFO cpu). Redis is single-threaded and, on a small
// machine, shares its cores with the benchmark, so its time per decision
// bounds the throughput as much as the client's does. Other clients of
// the same server add to it.
func redisCPU(b *testing.B, c *redis.Client) time.Duration {
	info, err := c.Info(context.Background(), "cpu").Result()
	must(b, err)
	var total float64
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_sys" || name == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			must(b, err)
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkRedisAllowInterleaved runs the Redis subjects of each shape in
// turns, so that all of them see the same load on a shared machine: each
// iteration is one round in which every subject, in an order that rotates
// from round to round, makes callers × 100 decisions from callers
// goroutines. It reports each subject's median time per decision over the
// rounds, and each subject's median against redis_rate's (…/redis_rate),
// which is the figure to compare on a busy machine. Run it with
// -benchtime 30x or more.
func BenchmarkRedisAllowInterleaved(b *testing.B) {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		b.Skip("set REDIS_URL=redis://127.0.0.1:6379/0 to compare Redis limiters")
	}
	opts, err := redis.ParseURL(url)
	must(b, err)
	run := time.Now().UnixNano()
	for _, shape := range redisShapes {
		for _, callers := range []int{16, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", shape.name, callers), func(b *testing.B) {
				allows := make([]allowFunc, len(redisSubjects))
				for i, subject := range redisSubjects {
					c := shape.client(opts)
					b.Cleanup(func() { _ = c.Close() })
					allows[i] = subject.new(b, c, fmt.Sprintf("akbench_%d_%d:", run, i), shape.rate)
					allows[i](context.Background(), shape.keys[0]) // load the script
				}
				const perCaller = 100
				spent := make([][]time.Duration, len(redisSubjects))
				round := 0
				b.ResetTimer()
				for b.Loop() {
					for j := range redisSubjects {
						i := (j + round) % len(redisSubjects)
						start := time.Now()
						var wg sync.WaitGroup
						for g := range callers {
							wg.Go(func() {
								r := rand.New(rand.NewPCG(uint64(round), uint64(g)))
								at := g * 7919
								for range perCaller {
									var key string
									if shape.random {
										key = shape.keys[r.IntN(len(shape.keys))]
									} else {
										key = shape.keys[at%len(shape.keys)]
										at++
									}
									allows[i](context.Background(), key)
								}
							})
						}
						wg.Wait()
						spent[i] = append(spent[i], time.Since(start)/time.Duration(callers*perCaller))
					}
					round++
				}
				var rr time.Duration
				for i, subject := range redisSubjects {
					if subject.name == "go-redis-redis_rate" {
						rr = median(spent[i])
					}
				}
				for i, subject := range redisSubjects {
					m := median(spent[i])
					b.ReportMetric(float64(m.Nanoseconds()), subject.name+"-ns/decision")
					if subject.name != "go-redis-redis_rate" {
						b.ReportMetric(float64(m)/float64(rr), subject.name+"/redis_rate")
					}
				}
			})
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
