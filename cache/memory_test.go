package cache_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
)

// TestMemoryStaysBoundedUnderDistinctKeys streams distinct keys through a
// bounded cache and checks that the heap it holds is proportional to
// MaxEntries, not to the number of keys seen. The normal run streams 1
// million keys through 10,000 entries (300,000 under -race or -short);
// ASYNCKIT_SOAK=1 runs the full 10 million through 100,000.
func TestMemoryStaysBoundedUnderDistinctKeys(t *testing.T) {
	keys, maxEntries := 1_000_000, 10_000
	if raceEnabled || testing.Short() {
		keys = 300_000
	}
	if os.Getenv("ASYNCKIT_SOAK") == "1" {
		keys, maxEntries = 10_000_000, 100_000
	}
	before := heapInUse()
	c := newCache(t, cache.Options[uint64, [16]byte]{MaxEntries: maxEntries})
	defer c.Close()
	var afterFill uint64
	for i := range uint64(keys) {
		c.Set(i, [16]byte{byte(i)})
		if i == uint64(maxEntries)*2 {
			afterFill = heapInUse()
		}
	}
	after := heapInUse()
	runtime.KeepAlive(c)
	require.Equal(t, maxEntries, c.Len())
	perEntry := float64(after-before) / float64(maxEntries)
	t.Logf("%d distinct keys through MaxEntries %d: heap in use %.1f MiB before, %.1f MiB once full, %.1f MiB after; %.0f bytes per entry; %d evictions",
		keys, maxEntries, mib(before), mib(afterFill), mib(after), perEntry, c.Stats().Evictions)
	require.Equal(t, uint64(keys-maxEntries), c.Stats().Evictions)
	// The heap after all keys must be what it was once the cache filled,
	// give or take map growth slack, and not grow with the keys streamed.
	require.Less(t, after, afterFill+afterFill/2+1<<20, "heap grew with the number of keys")
	require.Less(t, perEntry, 400.0, "bytes per entry")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
