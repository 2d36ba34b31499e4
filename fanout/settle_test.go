package fanout_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/fanout"
)

func TestSettleReportsEveryItem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var siblingCtxErr error
		res := fanout.Settle(t.Context(), []string{"ok", "fail", "panic", "slow"}, func(ctx context.Context, s string) (string, error) {
			switch s {
			case "fail":
				return "partial", errBoom
			case "panic":
				panic(s)
			case "slow":
				time.Sleep(50 * time.Millisecond)
				siblingCtxErr = ctx.Err()
			}
			return s + "!", nil
		}, fanout.Limit(4))
		require.Len(t, res, 4)
		require.Equal(t, fanout.Result[string]{Value: "ok!"}, res[0])
		require.Equal(t, fanout.Result[string]{Value: "partial", Err: errBoom}, res[1], "Settle keeps fn's value and error as they are")
		var pe *fanout.PanicError
		require.ErrorAs(t, res[2].Err, &pe)
		require.Equal(t, "panic", pe.Value)
		require.Equal(t, fanout.Result[string]{Value: "slow!"}, res[3])
		require.NoError(t, siblingCtxErr, "a failure must not cancel the others")
		require.Equal(t, 50*time.Millisecond, time.Since(start))
	})
}

func TestSettleEmptyInput(t *testing.T) {
	res := fanout.Settle(t.Context(), nil, func(context.Context, int) (int, error) {
		t.Fatal("fn called")
		return 0, nil
	})
	require.NotNil(t, res)
	require.Empty(t, res)
}

func TestSettleContext(t *testing.T) {
	t.Run("already done: every item reports ctx.Err and nothing is called", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var tr tracker
		res := fanout.Settle(ctx, make([]int, 4), func(context.Context, int) (int, error) {
			tr.enter()
			return 1, nil
		})
		require.Zero(t, tr.calls.Load())
		for _, r := range res {
			require.Equal(t, fanout.Result[int]{Err: context.Canceled}, r)
		}
	})
	t.Run("ends midway: unstarted items report ctx.Err, started ones their own outcome", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 25*time.Millisecond)
			defer cancel()
			var tr tracker
			res := fanout.Settle(ctx, []int{0, 1, 2, 3, 4}, func(ctx context.Context, i int) (int, error) {
				tr.enter()
				if i == 2 {
					time.Sleep(10 * time.Millisecond) // ignores ctx and succeeds late
					return i, nil
				}
				return i, sleep(ctx, 10*time.Millisecond)
			}, fanout.Limit(1))
			require.Equal(t, int64(3), tr.calls.Load())
			require.Equal(t, []fanout.Result[int]{
				{Value: 0}, {Value: 1}, {Value: 2},
				{Err: context.DeadlineExceeded}, {Err: context.DeadlineExceeded},
			}, res)
		})
	})
}

func TestSettlePerItemTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res := fanout.Settle(t.Context(), []time.Duration{time.Millisecond, time.Hour}, func(ctx context.Context, d time.Duration) (time.Duration, error) {
			return d, sleep(ctx, d)
		}, fanout.Timeout(time.Second))
		require.Equal(t, []fanout.Result[time.Duration]{
			{Value: time.Millisecond},
			{Value: time.Hour, Err: context.DeadlineExceeded},
		}, res)
	})
}

func TestDo(t *testing.T) {
	ok := func(context.Context) error { return nil }
	fail := func(context.Context) error { return errBoom }
	t.Run("all succeed: nil", func(t *testing.T) {
		require.NoError(t, fanout.Do(t.Context(), []func(context.Context) error{ok, ok, ok}))
	})
	t.Run("no functions: nil", func(t *testing.T) {
		require.NoError(t, fanout.Do(t.Context(), nil))
	})
	t.Run("a failure is tagged with the function's index", func(t *testing.T) {
		err := fanout.Do(t.Context(), []func(context.Context) error{ok, fail, ok})
		require.Equal(t, &fanout.ItemError{Index: 1, Err: errBoom}, err)
	})
	t.Run("the first failure cancels the others and waits for them", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var tr tracker
			slow := func(ctx context.Context) error {
				tr.enter()
				defer tr.exit()
				return sleep(ctx, time.Hour)
			}
			late := func(ctx context.Context) error {
				time.Sleep(time.Millisecond)
				return errBoom
			}
			start := time.Now()
			err := fanout.Do(t.Context(), []func(context.Context) error{slow, slow, late})
			require.Equal(t, &fanout.ItemError{Index: 2, Err: errBoom}, err)
			require.Equal(t, time.Millisecond, time.Since(start))
			require.Equal(t, int64(2), tr.calls.Load())
			require.Zero(t, tr.running.Load())
		})
	})
	t.Run("without fail-fast every function runs and all failures are joined", func(t *testing.T) {
		var tr tracker
		counted := func(f func(context.Context) error) func(context.Context) error {
			return func(ctx context.Context) error { tr.enter(); return f(ctx) }
		}
		other := errors.New("other")
		err := fanout.Do(t.Context(), []func(context.Context) error{
			counted(fail), counted(ok), counted(func(context.Context) error { return other }),
		}, fanout.FailFast(false), fanout.Limit(1))
		require.Equal(t, int64(3), tr.calls.Load())
		require.ErrorIs(t, err, errBoom)
		require.ErrorIs(t, err, other)
		require.EqualError(t, err, "fanout: item 0: boom\nfanout: item 2: other")
	})
	t.Run("a panic is an error", func(t *testing.T) {
		err := fanout.Do(t.Context(), []func(context.Context) error{ok, func(context.Context) error { panic(errBoom) }})
		var pe *fanout.PanicError
		require.ErrorAs(t, err, &pe)
		require.ErrorIs(t, err, errBoom)
	})
	t.Run("a nil ctx is an error", func(t *testing.T) {
		var nilCtx context.Context
		require.EqualError(t, fanout.Do(nilCtx, []func(context.Context) error{ok}), "fanout: nil Context")
	})
	t.Run("a nil function is an error and nothing runs", func(t *testing.T) {
		var tr tracker
		err := fanout.Do(t.Context(), []func(context.Context) error{
			func(context.Context) error { tr.enter(); return nil }, nil,
		})
		require.EqualError(t, err, "fanout: nil function: fns[1]")
		require.Zero(t, tr.calls.Load())
	})
}
