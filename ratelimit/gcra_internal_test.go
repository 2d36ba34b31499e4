package ratelimit

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestGCRANodeFillsACacheLinePair holds a GCRA node at the size that gives
// each key its own aligned pair of cache lines, with the TAT alone at the
// start of the second (see gcraState).
func TestGCRANodeFillsACacheLinePair(t *testing.T) {
	t.Parallel()
	var n node[gcraState]
	require.Equal(t, uintptr(gcraNodeSize), unsafe.Sizeof(n))
	require.Equal(t, uintptr(gcraStateOffset), unsafe.Offsetof(n.s))
	require.Equal(t, uintptr(gcraTATOffset), unsafe.Offsetof(n.s)+unsafe.Offsetof(n.s.tat))
	require.Equal(t, uintptr(gcraNodeSize-16), unsafe.Offsetof(n.prev))
}

func TestGCRAStateRetiresOnlyWhenIdle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		tat     int64
		now     int64
		retired bool
		want    int64
	}{
		{"a TAT after now is kept", 101, 100, false, 101},
		{"a TAT at now is retired", 100, 100, true, ^100},
		{"a TAT before now is retired", 5, 100, true, ^5},
		{"a fresh state is retired", 0, 0, true, ^0},
		{"a dead state stays dead", ^7, 100, true, ^7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s gcraState
			s.tat.Store(tc.tat)
			require.Equal(t, tc.retired, s.retire(tc.now))
			require.Equal(t, tc.want, s.tat.Load())
		})
	}
}

func TestGCRAStateIsReusedOnlyAboveEveryTATItHeld(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		tat      int64
		now      int64
		reusable bool
	}{
		{"a live state is not reusable", 5, 100, false},
		{"a key dropped with its TAT before now is", ^99, 100, true},
		{"a key dropped with its TAT at now is not", ^100, 100, false},
		{"a key evicted while it owed time is not", ^150, 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s gcraState
			s.tat.Store(tc.tat)
			require.Equal(t, tc.reusable, s.reusable(tc.now))
		})
	}
	t.Run("kill keeps the last TAT and is idempotent", func(t *testing.T) {
		var s gcraState
		s.tat.Store(1 << 40)
		s.kill()
		require.Equal(t, int64(^(1 << 40)), s.tat.Load())
		s.kill()
		require.Equal(t, int64(^(1 << 40)), s.tat.Load())
	})
	t.Run("reset starts afresh at now", func(t *testing.T) {
		var s gcraState
		s.tat.Store(^99)
		s.reset(100)
		require.Equal(t, int64(100), s.tat.Load())
	})
}

// TestGCRAKnownKeyTakesNoLock decides for a known key while the test holds
// the key's shard lock: the call must complete, and be counted.
func TestGCRAKnownKeyTakesNoLock(t *testing.T) {
	t.Parallel()
	g, err := NewGCRA(Limit{Rate: 1, Period: time.Hour, Burst: 2}, Options{MaxKeys: 16, Shards: 1})
	require.NoError(t, err)
	ctx := context.Background()
	res, err := g.AllowN(ctx, "k", 1)
	require.NoError(t, err)
	require.True(t, res.Allowed)

	sh, _ := g.t.shard("k")
	sh.mu.Lock()
	done := make(chan Result, 1)
	go func() {
		res, err := g.AllowN(ctx, "k", 1)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		sh.mu.Unlock()
		<-done
		t.Fatal("AllowN on a known key waited for its shard's lock")
	}
	sh.mu.Unlock()
	require.True(t, res.Allowed)
	require.Equal(t, 0, res.Remaining)
	res, err = g.AllowN(ctx, "k", 1)
	require.NoError(t, err)
	require.False(t, res.Allowed, "the lock-free admission was counted")
}

// TestGCRAIdleDropRacingAdmissionsCountsThemOnce makes a key idle, then
// sends it a burst's worth and more of concurrent calls at one instant
// while, in the same shard, new keys drop idle keys. Whether the calls land
// on the key's old state before the drop or on its new state after it,
// exactly Burst of them are admitted: a call that found the old state
// just before it was dropped must neither spend it and then also find a
// full new one, nor spend the state of the new key its node was recycled
// for.
func TestGCRAIdleDropRacingAdmissionsCountsThemOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		lim := Limit{Rate: 4, Period: time.Second, Burst: 4}
		ctx := context.Background()
		for round := range 10_000 {
			g, err := NewGCRA(lim, Options{MaxKeys: 1024, Shards: 1})
			require.NoError(t, err)
			_, err = g.AllowN(ctx, "hot", 1)
			require.NoError(t, err)
			time.Sleep(3 * lim.Period) // idle for longer than the grace period
			var admitted atomic.Int64
			var start, wg sync.WaitGroup
			start.Add(1)
			for w := range 16 {
				wg.Go(func() {
					start.Wait()
					if w%2 == 1 {
						// A new key: drops the idle cold end of the shard.
						_, err := g.AllowN(ctx, "new-"+strconv.Itoa(w), 1)
						if err != nil {
							t.Error(err)
						}
						return
					}
					for range 2 {
						res, err := g.AllowN(ctx, "hot", 1)
						if err != nil {
							t.Error(err)
						}
						if res.Allowed {
							admitted.Add(1)
						}
					}
				})
			}
			start.Done()
			wg.Wait()
			require.Equal(t, int64(lim.Burst), admitted.Load(), "round %d", round)
		}
	})
}

// TestGCRAChurnUnderContention runs callers over more keys than the cap
// while time moves on, so that keys are evicted, dropped idle and their
// nodes recycled while other callers still hold them. Every result must be
// well formed, the cap must hold, and, once the callers stop, every node
// in the index must hold a live state under its own key.
func TestGCRAChurnUnderContention(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		lim := Limit{Rate: 4, Period: time.Millisecond, Burst: 4}
		const maxKeys = 64
		g, err := NewGCRA(lim, Options{MaxKeys: maxKeys, Shards: 4})
		require.NoError(t, err)
		ctx := context.Background()
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for i := range 3000 {
					key := "k" + strconv.Itoa((i*7+w*13)%200)
					res, err := g.AllowN(ctx, key, 1+i%2)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Remaining < 0 || res.Remaining > lim.Burst || res.Allowed != (res.RetryAfter == 0) ||
						res.RetryAfter < 0 || res.ResetAfter < 0 || res.ResetAfter > lim.Period {
						t.Errorf("%s: malformed result %+v", key, res)
						return
					}
					switch {
					case i%400 == 0: // long enough for every key to go idle
						time.Sleep(3 * lim.Period)
					case i%50 == 0:
						time.Sleep(lim.Interval())
					}
				}
			})
		}
		wg.Wait()
		require.LessOrEqual(t, g.Len(), maxKeys)
		require.Equal(t, int64(g.Len()), g.t.count.Load())
		for i := range g.t.shards {
			sh := &g.t.shards[i]
			for n := sh.head.next; n != &sh.head; n = n.next {
				require.GreaterOrEqual(t, n.s.tat.Load(), int64(0), "%s is listed with a dead state", n.key())
				require.Zero(t, n.seq.Load()&1)
				require.Same(t, n, sh.find(n.hash, n.key()))
			}
		}
	})
}

// TestGCRAKeyChurnAllocatesNothing sends a rotating stream of more keys
// than the cap through a GCRA's table, with each key's TAT set as an
// admission would set it: once warm, new keys reuse dropped keys' nodes,
// whether those were evicted at the cap after their TAT passed or dropped
// as idle.
func TestGCRAKeyChurnAllocatesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		step int64 // time between calls, ns
	}{
		{"evicted at the cap", 1_000},
		{"dropped as idle", 2 * int64(time.Millisecond)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable[gcraState](Options{MaxKeys: 64, Shards: 1}, time.Millisecond)
			keys := make([]string, 256)
			hashes := make([]uint64, len(keys))
			for i := range keys {
				keys[i] = "key-" + strconv.Itoa(i)
				_, hashes[i] = tb.shard(keys[i])
			}
			sh := &tb.shards[0]
			now, i := int64(0), 0
			call := func() {
				k := i % len(keys)
				sh.mu.Lock()
				n := tb.node(sh, hashes[k], keys[k], now)
				n.s.tat.Store(max(n.s.tat.Load(), now) + 10)
				sh.mu.Unlock()
				now += tc.step
				i++
			}
			for range 1000 {
				call()
			}
			require.Zero(t, testing.AllocsPerRun(1000, call))
			require.LessOrEqual(t, tb.len(), 64)
		})
	}
}
