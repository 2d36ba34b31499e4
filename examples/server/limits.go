package main

import (
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/redisrate"
)

// newLimiter returns the per-client limiter, and where it keeps its
// counts, for the startup line.
//
// Without Redis, each instance limits its clients in memory (GCRA):
// behind a load balancer that spreads a client over N instances, the
// client gets up to N times RATE_LIMIT.
//
// With Redis, the limit is one GCRA in Redis, shared by every instance,
// exact however requests are spread. It is guarded by
// ratelimit.WithFailurePolicy: each decision gets REDIS_TIMEOUT, a breaker
// stops asking a Redis that failed 5 times in a row and probes it again
// after a second, and meanwhile the policy is Fallback to an in-memory
// GCRA of the same limit in which each request costs RATE_LIMIT_REPLICAS
// units, so that each of the N instances admits about 1/N of the limit and
// together they stay near it. Set RATE_LIMIT_REPLICAS to the number of
// instances. When Redis answers again, its counts take over; what the
// fallback admitted meanwhile was not counted there.
func (s *server) newLimiter(client *redis.Client) (ratelimit.Limiter, string, error) {
	cfg := s.cfg
	local, err := ratelimit.NewGCRA(cfg.RateLimit, ratelimit.Options{MaxKeys: 100_000})
	if err != nil {
		return nil, "", err
	}
	if client == nil {
		return local, "in memory, per instance", nil
	}
	shared, err := redisrate.NewGCRA(client, cfg.RateLimit, redisrate.Options{Prefix: cfg.RedisPrefix + "ratelimit:"})
	if err != nil {
		return nil, "", err
	}
	guarded, err := ratelimit.WithFailurePolicy(shared, ratelimit.Fallback(local, cfg.RateReplicas),
		ratelimit.FailureOptions{Timeout: cfg.RedisTimeout, Observe: s.metrics.limitEvent})
	if err != nil {
		return nil, "", err
	}
	return guarded, fmt.Sprintf("in redis, falling back to 1/%d of it per instance while Redis fails", cfg.RateReplicas), nil
}
