package rediscache_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/cache"
	"github.com/asynckit/asynckit/cache/rediscache"
)

// A two-tier user cache shared by every instance of a service. It needs a
// Redis server (REDIS_URL), so it is compiled but not run by go test.
func Example_twoTier() {
	opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()

	ctx := context.Background()
	users, err := rediscache.New(ctx, rediscache.Options[int, user]{
		Client:     rdb,
		Namespace:  "example:users:",
		TTL:        10 * time.Minute,
		Jitter:     0.1,
		Local:      cache.Options[string, user]{MaxEntries: 10_000, TTL: 30 * time.Second},
		Invalidate: true,            // Delete and Set drop every instance's local copy
		LockTTL:    5 * time.Second, // one instance loads a missing key, the others wait
		OnError:    func(op string, err error) { fmt.Println("redis", op, err) },
	})
	if err != nil {
		panic(err)
	}
	defer users.Close()

	u, err := users.GetOrLoad(ctx, 42, func(ctx context.Context, id int) (user, error) {
		return user{ID: id, Name: "Ada"}, nil // SELECT … WHERE id = $1
	})
	fmt.Println(u.Name, err)
	_ = users.Delete(ctx, 42) // after an UPDATE: every instance forgets user 42
}
