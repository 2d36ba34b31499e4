package cache_test

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
)

// TestAgreesWithAMapUnderRandomOperations drives the cache and a plain map
// with the same random Sets, Deletes and Gets. With room for every key the
// two must agree exactly, through table growth, tombstones and rebuilds;
// when the cache must evict, it may forget a key but never return a wrong
// value.
func TestAgreesWithAMapUnderRandomOperations(t *testing.T) {
	tests := []struct {
		name       string
		maxEntries int
		keySpace   int
		exact      bool
	}{
		{"room for every key, exact agreement", 4096, 3000, true},
		{"evicting, never a wrong value", 256, 3000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(t, cache.Options[int, int]{MaxEntries: tt.maxEntries})
			defer c.Close()
			model := map[int]int{}
			r := rand.New(rand.NewPCG(1, 2))
			for op := range 100_000 {
				k := r.IntN(tt.keySpace)
				switch r.IntN(10) {
				case 0, 1, 2:
					c.Set(k, op)
					model[k] = op
				case 3:
					deleted := c.Delete(k)
					if tt.exact {
						require.Equal(t, hasKey(model, k), deleted, "op %d key %d", op, k)
					} else if deleted {
						require.True(t, hasKey(model, k), "op %d: deleted key %d the cache should not hold", op, k)
					}
					delete(model, k)
				default:
					v, ok := c.Get(k)
					want, inModel := model[k]
					if tt.exact {
						require.Equal(t, inModel, ok, "op %d key %d", op, k)
					}
					if ok {
						require.True(t, inModel, "op %d: key %d came back after its Delete", op, k)
						require.Equal(t, want, v, "op %d key %d", op, k)
					}
				}
				if op%1000 == 0 {
					require.LessOrEqual(t, c.Len(), tt.maxEntries)
				}
			}
			if tt.exact {
				require.Equal(t, len(model), c.Len())
			}
		})
	}
}

func hasKey(m map[int]int, k int) bool { _, ok := m[k]; return ok }

// TestConcurrentReadersSeeOnlyWrittenValues has writers store values that
// encode their key while readers check every value they get; -race checks
// the lock-free read path against the writers.
func TestConcurrentReadersSeeOnlyWrittenValues(t *testing.T) {
	c := newCache(t, cache.Options[int, [2]int]{MaxEntries: 512})
	defer c.Close()
	const keys, ops = 2000, 20_000
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range ops {
				k := r.IntN(keys)
				if i%5 == 0 {
					c.Delete(k)
				} else {
					c.Set(k, [2]int{k, i})
				}
			}
		})
	}
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range ops {
				k := r.IntN(keys)
				if v, ok := c.Get(k); ok {
					require.Equal(t, k, v[0], "a value written for another key")
				}
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, c.Len(), 512)
}
