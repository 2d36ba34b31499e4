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
	before, objBefore := heapInUse()
	c := newCache(t, cache.Options[uint64, [16]byte]{MaxEntries: maxEntries})
	defer c.Close()
	var quarter, objQuarter uint64
	for i := range uint64(keys) {
		c.Set(i, [16]byte{byte(i)})
		if i == uint64(keys/4) {
			quarter, objQuarter = heapInUse()
		}
	}
	after, objAfter := heapInUse()
	runtime.KeepAlive(c)
	require.Equal(t, maxEntries, c.Len())
	perEntry := float64(after-before) / float64(maxEntries)
	t.Logf("%d distinct keys through MaxEntries %d: heap in use %.1f MiB before, %.1f MiB a quarter of the way, %.1f MiB after; %.0f bytes per entry; live heap objects %d before, %d after; %d evictions",
		keys, maxEntries, mib(before), mib(quarter), mib(after), perEntry, objBefore, objAfter, c.Stats().Evictions)
	require.Equal(t, uint64(keys-maxEntries), c.Stats().Evictions)
	// One object per entry, plus a fixed few per shard: the live object
	// count does not move once the cache is full.
	require.LessOrEqual(t, objAfter, objQuarter+objQuarter/100, "live objects grew with the number of keys")
	require.Less(t, objAfter-objBefore, uint64(maxEntries)+uint64(maxEntries)/10, "objects per entry")
	// Past the first quarter of the stream the heap must stay flat, give or
	// take allocator fragmentation, however many more keys go through.
	require.Less(t, after, quarter+quarter/4+1<<20, "heap grew with the number of keys")
	require.Less(t, perEntry, 400.0, "bytes per entry")
}

// heapInUse returns the bytes in in-use heap spans and the number of live
// heap objects, after a full collection.
func heapInUse() (inUse, objects uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.HeapObjects
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
