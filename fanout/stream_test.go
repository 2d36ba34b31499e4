package fanout_test

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/fanout"
)

func TestStreamYieldsInCompletionOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		delays := []time.Duration{40, 10, 30, 20, 50}
		start := time.Now()
		var order []int
		var at []time.Duration
		for i, r := range fanout.Stream(t.Context(), delays, func(ctx context.Context, d time.Duration) (time.Duration, error) {
			return d, sleep(ctx, d*time.Millisecond)
		}) {
			require.NoError(t, r.Err)
			require.Equal(t, delays[i], r.Value)
			order = append(order, i)
			at = append(at, time.Since(start))
		}
		require.Equal(t, []int{1, 3, 2, 0, 4}, order)
		require.Equal(t, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond}, at,
			"each result is yielded as soon as its call completes")
	})
}

func TestStreamYieldsEveryItemOnce(t *testing.T) {
	items := make([]int, 200)
	for i := range items {
		items[i] = i
	}
	seen := make([]int, len(items))
	for i, r := range fanout.Stream(t.Context(), items, func(_ context.Context, i int) (int, error) {
		switch i % 3 {
		case 1:
			return 0, errBoom
		case 2:
			panic(i)
		}
		return i * 2, nil
	}, fanout.Limit(4)) {
		seen[i]++
		switch i % 3 {
		case 0:
			require.Equal(t, fanout.Result[int]{Value: i * 2}, r)
		case 1:
			require.ErrorIs(t, r.Err, errBoom)
		case 2:
			var pe *fanout.PanicError
			require.ErrorAs(t, r.Err, &pe)
			require.Equal(t, i, pe.Value)
		}
	}
	for i, n := range seen {
		require.Equal(t, 1, n, "item %d", i)
	}
}

func TestStreamBreakCancelsTheRestAndWaits(t *testing.T) {
	tests := []struct {
		name      string
		items     int
		limit     int
		calls     int64 // calls started in all
		cancelled int64 // calls that saw their context end
	}{
		// All four start at once; the first result breaks the loop.
		{"running calls are cancelled and awaited", 4, 4, 4, 3},
		// One at a time: item 1 is running when the loop breaks, and
		// items 2 to 5 never start.
		{"no call starts after the break", 6, 1, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracker
				var cancelled atomic.Int64
				items := []time.Duration{10, 50, 60, 70, 80, 90}[:tt.items]
				for range fanout.Stream(t.Context(), items, func(ctx context.Context, d time.Duration) (time.Duration, error) {
					tr.enter()
					defer tr.exit()
					err := sleep(ctx, d*time.Millisecond)
					if err != nil {
						time.Sleep(5 * time.Millisecond) // cleans up slowly, ignoring ctx
						cancelled.Add(1)
					}
					return d, err
				}, fanout.Limit(tt.limit)) {
					synctest.Wait() // let the workers settle, so the count is exact
					break
				}
				require.Zero(t, tr.running.Load(), "a call was still running after the loop")
				require.Equal(t, tt.calls, tr.calls.Load())
				require.Equal(t, tt.cancelled, cancelled.Load())
			})
		})
	}
}

func TestStreamPanicInLoopBodyStillWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr tracker
		func() {
			defer func() { require.Equal(t, "body", recover()) }()
			for range fanout.Stream(t.Context(), make([]int, 10), func(ctx context.Context, _ int) (int, error) {
				tr.enter()
				defer tr.exit()
				return 0, sleep(ctx, time.Millisecond)
			}, fanout.Limit(2)) {
				panic("body")
			}
		}()
		require.Zero(t, tr.running.Load())
	})
}

func TestStreamContext(t *testing.T) {
	t.Run("already done: every item yields ctx.Err", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var tr tracker
		n := 0
		for _, r := range fanout.Stream(ctx, make([]int, 5), func(context.Context, int) (int, error) {
			tr.enter()
			return 0, nil
		}) {
			require.Equal(t, context.Canceled, r.Err)
			n++
		}
		require.Equal(t, 5, n)
		require.Zero(t, tr.calls.Load())
	})
	t.Run("ends midway: unstarted items yield ctx.Err", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 15*time.Millisecond)
			defer cancel()
			var got []fanout.Result[int]
			for _, r := range fanout.Stream(ctx, []int{1, 2, 3, 4}, func(ctx context.Context, i int) (int, error) {
				return i, sleep(ctx, 10*time.Millisecond)
			}, fanout.Limit(1)) {
				got = append(got, r)
			}
			require.Equal(t, []fanout.Result[int]{
				{Value: 1}, {Value: 2, Err: context.DeadlineExceeded},
				{Err: context.DeadlineExceeded}, {Err: context.DeadlineExceeded},
			}, got)
		})
	})
}

func TestStreamRunsAgainOnEachRange(t *testing.T) {
	var tr tracker
	seq := fanout.Stream(t.Context(), []int{1, 2, 3}, func(_ context.Context, i int) (int, error) {
		tr.enter()
		return i, nil
	})
	for range 2 {
		sum := 0
		for _, r := range seq {
			sum += r.Value
		}
		require.Equal(t, 6, sum)
	}
	require.Equal(t, int64(6), tr.calls.Load())
}

func TestStreamEmptyAndBadInput(t *testing.T) {
	for range fanout.Stream(t.Context(), []int(nil), func(context.Context, int) (int, error) { return 0, nil }) {
		t.Fatal("yielded for an empty input")
	}
	var nilCtx context.Context
	for _, r := range fanout.Stream(nilCtx, []int{1}, func(context.Context, int) (int, error) { return 0, nil }) {
		require.EqualError(t, r.Err, "fanout: nil Context")
	}
	for _, r := range fanout.Stream[int, int](t.Context(), []int{1}, nil) {
		require.EqualError(t, r.Err, "fanout: nil function")
	}
}
