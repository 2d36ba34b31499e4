package cache_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynckit/asynckit/cache"
)

type User struct {
	ID   int64
	Name string
}

// A cache-through user lookup: concurrent misses of one user reach the
// database once, and later lookups are served from memory.
func Example_userLookup() {
	var queries atomic.Int32
	loadUser := func(ctx context.Context, id int64) (User, error) {
		queries.Add(1) // stands in for SELECT … WHERE id = $1
		if id <= 0 {
			return User{}, errors.New("no such user")
		}
		return User{ID: id, Name: fmt.Sprintf("user-%d", id)}, nil
	}

	users, err := cache.New(cache.Options[int64, User]{MaxEntries: 10_000, TTL: time.Minute})
	if err != nil {
		panic(err)
	}
	defer users.Close()

	ctx := context.Background()
	for range 3 {
		u, err := users.GetOrLoad(ctx, 42, loadUser)
		fmt.Println(u.Name, err)
	}
	_, err = users.GetOrLoad(ctx, -1, loadUser)
	fmt.Println(err)
	fmt.Println("queries:", queries.Load())
	// Output:
	// user-42 <nil>
	// user-42 <nil>
	// user-42 <nil>
	// no such user
	// queries: 2
}

// Stale-while-revalidate: after RefreshAfter, a lookup returns the cached
// value at once and one background reload replaces it.
func Example_staleWhileRevalidate() {
	var version atomic.Int32
	loadConfig := func(ctx context.Context, key string) (string, error) {
		return fmt.Sprintf("%s v%d", key, version.Add(1)), nil
	}
	configs, err := cache.New(cache.Options[string, string]{TTL: time.Hour, RefreshAfter: 20 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer configs.Close()

	ctx := context.Background()
	v, _ := configs.GetOrLoad(ctx, "flags", loadConfig)
	fmt.Println(v)
	time.Sleep(30 * time.Millisecond)
	v, _ = configs.GetOrLoad(ctx, "flags", loadConfig) // stale, starts the reload
	fmt.Println(v)
	for configs.Stats().Loads < 2 {
		time.Sleep(time.Millisecond) // wait for the background reload
	}
	v, _ = configs.GetOrLoad(ctx, "flags", loadConfig)
	fmt.Println(v)
	// Output:
	// flags v1
	// flags v1
	// flags v2
}

// GetOrLoadMany turns N lookups into one query for the keys not cached.
func ExampleCache_GetOrLoadMany() {
	users, err := cache.New(cache.Options[int64, User]{})
	if err != nil {
		panic(err)
	}
	defer users.Close()
	users.Set(1, User{ID: 1, Name: "cached"})

	got, err := users.GetOrLoadMany(context.Background(), []int64{1, 2, 3},
		func(ctx context.Context, ids []int64) (map[int64]User, error) {
			fmt.Println("query for", ids) // SELECT … WHERE id = ANY($1)
			return map[int64]User{2: {ID: 2, Name: "loaded"}}, nil
		})
	fmt.Println(got[1].Name, got[2].Name, len(got), err)
	// Output:
	// query for [2 3]
	// cached loaded 2 <nil>
}
