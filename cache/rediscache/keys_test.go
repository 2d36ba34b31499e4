package rediscache_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache/rediscache"
)

// Two caches whose namespaces prefix each other ("x:" and "x:v:") once
// shared a Redis key: ("x:", "v:1") and ("x:v:", "1") were both
// "x:v:v:1", so one cache served the other's value. No (namespace, key)
// pair may share a Redis key with another; FuzzKeys proves it for the
// encoding, and this test for the caches themselves.
func TestNamespacesThatPrefixEachOtherShareNoKey(t *testing.T) {
	client, ns := setup(t)
	ctx := context.Background()
	cases := []struct {
		name       string
		ns1, key1  string
		ns2, key2  string
		lockOnNew2 bool
	}{
		{"a value key against a longer namespace's value key", "x:", "v:1", "x:v:", "1", false},
		{"a value key against a longer namespace's lock key", "y:", "l:2", "y:v:", "2", true},
		{"namespaces without separators", "z", "v:3", "zv:", "3", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			newCache := func(namespace string, lockTTL time.Duration) *rediscache.Cache[string, string] {
				cc, err := rediscache.New(ctx, rediscache.Options[string, string]{Client: ownClient(t, client),
					Namespace: ns + namespace, TTL: time.Minute, LockTTL: lockTTL})
				require.NoError(t, err)
				t.Cleanup(func() { require.NoError(t, cc.Close()) })
				return cc
			}
			one := newCache(c.ns1, 0)
			var lockTTL time.Duration
			if c.lockOnNew2 {
				lockTTL = time.Minute
			}
			two := newCache(c.ns2, lockTTL)

			require.NoError(t, one.Set(ctx, c.key1, "one's value"))
			v, err := two.GetOrLoad(ctx, c.key2, func(context.Context, string) (string, error) { return "two's value", nil })
			require.NoError(t, err)
			require.Equal(t, "two's value", v, "two read its own key, not one's")

			other := newCache(c.ns1, 0) // no local copy: reads Redis
			v, ok, err := other.Get(ctx, c.key1)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "one's value", v, "two's load did not touch one's key")
		})
	}
}
