package testenv

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/internal/faultproxy"
)

// Redis returns a client for the server named by REDIS_URL and a key prefix
// unique to the test, such as "ak_1f2e3d4c5b6a_testfoo:". The test must put
// every key it writes under that prefix; at cleanup the keys under it are
// deleted and the client is closed.
//
// The prefix contains no braces, so callers that hash-tag keys for Redis
// Cluster can wrap their own part in {…} after it.
func Redis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	url := lookup(tb, EnvRedis)
	opts, err := redis.ParseURL(url)
	must(tb, err, "parse %s", EnvRedis)
	opts.DialTimeout = connectTimeout
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		failUnreachable(tb, "Redis", EnvRedis, err)
	}
	prefix := uniqueName(tb, 48) + ":"
	tb.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 1000 {
				client.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			client.Unlink(ctx, keys...)
		}
		if err := iter.Err(); err != nil {
			tb.Errorf("testenv: clean up Redis keys under %q: %v", prefix, err)
		}
	})
	return client, prefix
}

// RedisThroughProxy returns a client with base's options whose connections
// pass through a fault-injecting loopback proxy to base's server, and the
// proxy, so that a test can cut or slow its link to Redis. tweak, if not
// nil, adjusts the client's options first (timeouts, retries). The client
// and then the proxy are closed at cleanup.
func RedisThroughProxy(tb testing.TB, base *redis.Client, tweak func(*redis.Options)) (*redis.Client, *faultproxy.Proxy) {
	tb.Helper()
	proxy, err := faultproxy.New(base.Options().Addr)
	must(tb, err, "start a proxy to Redis")
	tb.Cleanup(func() {
		if err := proxy.Close(); err != nil {
			tb.Errorf("testenv: close the proxy to Redis: %v", err)
		}
	})
	opts := *base.Options()
	opts.Addr = proxy.Addr()
	if tweak != nil {
		tweak(&opts)
	}
	client := redis.NewClient(&opts)
	tb.Cleanup(func() { _ = client.Close() })
	return client, proxy
}
