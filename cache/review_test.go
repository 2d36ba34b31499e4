package cache_test

import (
	"context"
	"runtime"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
)

// A loader that ends its goroutine with runtime.Goexit (t.FailNow in a
// test's loader does) neither returns nor panics; its waiters must still
// get an error, and the key must load again afterwards.
func TestLoaderThatExitsItsGoroutineFailsItsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{})
		defer c.Close()
		ctx := context.Background()
		exit := func(context.Context, string) (int, error) {
			runtime.Goexit()
			return 0, nil
		}
		_, err := c.GetOrLoad(ctx, "k", exit)
		require.ErrorIs(t, err, cache.ErrLoaderExited)

		found, err := c.GetOrLoadMany(ctx, []string{"a", "b"}, func(context.Context, []string) (map[string]int, error) {
			runtime.Goexit()
			return nil, nil
		})
		require.ErrorIs(t, err, cache.ErrLoaderExited)
		require.Empty(t, found)

		v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (int, error) { return 7, nil })
		require.NoError(t, err)
		require.Equal(t, 7, v)
		st := c.Stats()
		require.Equal(t, uint64(3), st.Loads)
		require.Equal(t, uint64(2), st.LoadErrors)
	})
}
