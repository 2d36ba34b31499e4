package fanout

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNextClaimAdaptsToTheCallsDuration(t *testing.T) {
	b := &batch[int, int]{workers: 4}
	for _, tc := range []struct {
		name       string
		size       int
		d          time.Duration
		left, want int
	}{
		{name: "a fast claim doubles", size: 4, d: time.Microsecond, left: 100_000, want: 8},
		{name: "a claim that took exactly the target doubles", size: 4, d: claimTarget, left: 100_000, want: 8},
		{name: "growth stops at maxClaim", size: maxClaim, d: 0, left: 100_000, want: maxClaim},
		{name: "a slow claim falls back to one item", size: maxClaim, d: claimTarget + 1, left: 100_000, want: 1},
		{name: "a slow single item stays at one", size: 1, d: time.Second, left: 100_000, want: 1},
		{name: "at most 1/(8*workers) of the items left", size: 128, d: 0, left: 3200, want: 100},
		{name: "never below one near the end", size: 128, d: 0, left: 3, want: 1},
		{name: "never below one at the end", size: 2, d: 0, left: 0, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, b.nextClaim(tc.size, tc.d, tc.left))
		})
	}
}

// A claim that straddles a change from fast calls to slow ones is run by
// one worker, so claims must stay a small share of what is left. Here
// 19,200 items return at once, which lets claims grow to their largest,
// and the last 800 each wait 1ms. Perfect balance is 800 × 1ms / limit.
// A claim of at most 1/(8×limit) of the items left holds at most
// 100/limit slow items, an eighth of that; the bound allows twice as much,
// for the claims other workers make between a worker's look at the counter
// and its claim. An uncapped claim of maxClaim slow items would take 256ms.
func TestSlowCallsAfterFastOnesAreSpreadOverEveryWorker(t *testing.T) {
	const n, slow = 20_000, 800
	for _, limit := range []int{2, 4, 8} {
		for _, via := range []string{"Map", "Settle"} {
			t.Run(fmt.Sprintf("%s/limit=%d", via, limit), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					var calls atomic.Int64
					fn := func(ctx context.Context, i int) (int, error) {
						calls.Add(1)
						if i >= n-slow {
							time.Sleep(time.Millisecond)
						}
						return i, nil
					}
					items := make([]int, n)
					for i := range items {
						items[i] = i
					}
					start := time.Now()
					if via == "Map" {
						out, err := Map(t.Context(), items, fn, Limit(limit))
						require.NoError(t, err)
						require.Equal(t, items, out)
					} else {
						for i, r := range Settle(t.Context(), items, fn, Limit(limit)) {
							require.Equal(t, Result[int]{Value: i}, r)
						}
					}
					took := time.Since(start)
					ideal := slow * time.Millisecond / time.Duration(limit)
					require.Equal(t, int64(n), calls.Load())
					require.GreaterOrEqual(t, took, ideal)
					require.LessOrEqual(t, took, ideal+ideal/4, "ideal %v", ideal)
				})
			})
		}
	}
}

// Slow calls that come first, together, must not be claimed by one worker
// in a run: claims start at one item and grow only while calls are fast.
// Here the first 100 items each wait 10ms and the rest return at once, so
// the run takes exactly 100 × 10ms / limit.
func TestClusteredSlowCallsAreClaimedOneAtATime(t *testing.T) {
	const n, slow = 4000, 100
	for _, limit := range []int{2, 4} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fn := func(ctx context.Context, i int) (int, error) {
					if i < slow {
						time.Sleep(10 * time.Millisecond)
					}
					return i, nil
				}
				items := make([]int, n)
				for i := range items {
					items[i] = i
				}
				start := time.Now()
				for i, r := range Settle(t.Context(), items, fn, Limit(limit)) {
					require.Equal(t, Result[int]{Value: i}, r)
				}
				require.Equal(t, slow*10*time.Millisecond/time.Duration(limit), time.Since(start))
			})
		})
	}
}

// A runtime.Goexit in the middle of a large claim hands the rest of that
// claim to the replacement worker: every item is still called once and
// reported.
func TestGoexitInsideALargeClaimKeepsTheRestOfIt(t *testing.T) {
	const n = 5000
	var calls atomic.Int64
	called := make([]atomic.Bool, n)
	fn := func(_ context.Context, i int) (int, error) {
		calls.Add(1)
		if called[i].Swap(true) {
			panic(fmt.Sprintf("item %d called twice", i))
		}
		if i%500 == 499 {
			runtime.Goexit()
		}
		if i%500 == 250 {
			panic(i)
		}
		return i, nil
	}
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	for i, r := range Settle(t.Context(), items, fn, Limit(2)) {
		switch i % 500 {
		case 499:
			require.Equal(t, Result[int]{Err: errGoexit}, r, "item %d", i)
		case 250:
			var pe *PanicError
			require.ErrorAs(t, r.Err, &pe, "item %d", i)
			require.Equal(t, i, pe.Value)
		default:
			require.Equal(t, Result[int]{Value: i}, r, "item %d", i)
		}
	}
	require.Equal(t, int64(n), calls.Load())
}
