package cache_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
)

// TestGetOrLoadUnderChurn mixes GetOrLoad, GetOrLoadMany, Set, Delete and
// Purge on a small key space, with loaders that are slow, fail or panic and
// callers that give up at random. Every answer must be the key's value or
// an error the test can explain, nothing may deadlock, and goleak (in
// TestMain) checks that Close leaves no goroutine behind.
func TestGetOrLoadUnderChurn(t *testing.T) {
	c := newCache(t, cache.Options[int, int]{
		MaxEntries: 64, TTL: 50 * time.Millisecond, RefreshAfter: 20 * time.Millisecond,
		NegativeTTL: 5 * time.Millisecond, StaleIfError: 10 * time.Millisecond, LoadTimeout: 20 * time.Millisecond,
	})
	errFlaky := errors.New("flaky")
	value := func(k int) int { return k * 7 }
	load := func(ctx context.Context, k int) (int, error) {
		switch rand.IntN(20) {
		case 0:
			return 0, errFlaky
		case 1:
			panic("loader panic")
		case 2:
			select { // slow: may hit LoadTimeout or be abandoned
			case <-time.After(30 * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return value(k), nil
	}
	bulk := func(ctx context.Context, keys []int) (map[int]int, error) {
		if rand.IntN(10) == 0 {
			return nil, errFlaky
		}
		out := map[int]int{}
		for _, k := range keys {
			out[k] = value(k)
		}
		return out, nil
	}
	explained := func(err error) bool {
		var pe *cache.PanicError
		return errors.Is(err, errFlaky) || errors.As(err, &pe) ||
			errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
	}
	var wg sync.WaitGroup
	deadline := time.Now().Add(400 * time.Millisecond)
	for w := range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				k := rand.IntN(100)
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(15))*time.Millisecond)
				switch rand.IntN(10) {
				case 0:
					c.Set(k, value(k))
				case 1:
					c.Delete(k)
				case 2:
					if w == 0 && rand.IntN(20) == 0 {
						c.Purge()
					}
				case 3:
					got, err := c.GetOrLoadMany(ctx, []int{k, k + 1, k + 2}, bulk)
					if err != nil {
						require.True(t, explained(err), "unexpected error %v", err)
					}
					for key, v := range got {
						require.Equal(t, value(key), v)
					}
				default:
					v, err := c.GetOrLoad(ctx, k, load)
					if err != nil {
						require.True(t, explained(err), "unexpected error %v", err)
					} else {
						require.Equal(t, value(k), v)
					}
				}
				cancel()
			}
		})
	}
	wg.Wait()
	c.Close()
	require.LessOrEqual(t, c.Len(), 64)
	st := c.Stats()
	t.Logf("%d hits, %d misses, %d loads (%d failed), %d coalesced, %d refreshes, %d stale served",
		st.Hits, st.Misses, st.Loads, st.LoadErrors, st.Coalesced, st.Refreshes, st.StaleServed)
	require.Positive(t, st.Loads)
	require.Positive(t, st.Coalesced, "concurrent misses shared loads")
}
