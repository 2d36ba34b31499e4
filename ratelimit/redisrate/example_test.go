package redisrate_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"

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
