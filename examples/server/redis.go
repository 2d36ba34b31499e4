package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// openRedis connects to the Redis that cfg names and checks that it
// answers: the user cache subscribes to its invalidations at start.
//
// Commands honour their context's deadline (ContextTimeoutEnabled), so
// that REDIS_TIMEOUT bounds each one, and are never retried by the client
// (MaxRetries -1): a rate limit decision sent twice would be charged twice,
// and everything the server sends to Redis has its own way of doing
// without an answer.
func openRedis(ctx context.Context, cfg *config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("%w: -redis-url (REDIS_URL) %q: %w", errConfig, redactURL(cfg.RedisURL), err)
	}
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1
	opts.DialTimeout = max(cfg.RedisTimeout, time.Second)
	opts.ReadTimeout = max(cfg.RedisTimeout, time.Second)
	opts.WriteTimeout = max(cfg.RedisTimeout, time.Second)
	client := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("connect to redis %s: %w", redactURL(cfg.RedisURL), err)
	}
	return client, nil
}
