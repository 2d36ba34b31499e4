package redisrate_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/redisrate"
)

// One limit shared by every instance of a service: each instance builds the
// same limiter on the same Redis, and together they admit 100 requests a
// minute per API key, exactly, whatever their clocks say. It needs a Redis,
// so it only compiles here.
func ExampleNewGCRA() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()

	lim, err := redisrate.NewGCRA(rdb, ratelimit.PerMinute(100), redisrate.Options{Prefix: "api:"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := lim.AllowN(context.Background(), "key-123", 1)
	if err != nil {
		log.Fatal(err) // Redis is down: see ratelimit.WithFailurePolicy
	}
	fmt.Println(res.Allowed, res.Remaining)

	// The same limiter behind HTTP middleware, keyed by API key.
	mw, err := ratelimit.Middleware(lim, ratelimit.KeyByHeader("X-Api-Key"))
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/api/", mw(http.NotFoundHandler()))
}

// A Redis limiter guarded for outages: each decision waits at most 50ms for
// Redis; after 5 failures in a row the breaker stops calling it for a
// second at a time, and meanwhile each of the 4 replicas enforces a quarter
// of the limit in memory. It needs a Redis, so it only compiles here.
func Example_failurePolicy() {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  os.Getenv("REDIS_ADDR"),
		ContextTimeoutEnabled: true, // so that the 50ms timeout cuts a slow call short
	})
	defer rdb.Close()

	lim := ratelimit.PerMinute(100)
	shared, err := redisrate.NewGCRA(rdb, lim, redisrate.Options{})
	if err != nil {
		log.Fatal(err)
	}
	local, err := ratelimit.NewGCRA(lim, ratelimit.Options{})
	if err != nil {
		log.Fatal(err)
	}
	guarded, err := ratelimit.WithFailurePolicy(shared, ratelimit.Fallback(local, 4), ratelimit.FailureOptions{
		Timeout:  50 * time.Millisecond,
		Failures: 5,
		OpenFor:  time.Second,
		Observe: func(ev ratelimit.Event) {
			if ev.Outcome != ratelimit.Decided {
				log.Printf("rate limit for %s %v: %v", ev.Key, ev.Outcome, ev.Err)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	res, err := guarded.AllowN(context.Background(), "key-123", 1)
	fmt.Println(res.Allowed, err)
}

// A busy service's limiter, batching: the decisions of concurrent requests
// share round trips to Redis, up to 64 in one pipeline, while each is still
// its own atomic script. A lone request is sent at once. It needs a Redis,
// so it only compiles here.
func ExampleOptions_batch() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR")})
	defer rdb.Close()

	lim, err := redisrate.NewGCRA(rdb, ratelimit.PerSecond(50), redisrate.Options{Prefix: "api:", Batch: 64})
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for range 200 {
		wg.Go(func() {
			res, err := lim.AllowN(context.Background(), "tenant-7", 1)
			if err == nil && res.Allowed {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Println(admitted.Load(), "of 200 admitted") // 50: the burst, if Redis is up
}
