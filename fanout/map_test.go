package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/fanout"
)

var errBoom = errors.New("boom")

// codeError is an error type carrying data, to check errors.As through the
// aggregate.
type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d", e.code) }

func TestMapReturnsValuesInInputOrder(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		limit int
	}{
		{"one worker", 10, 1},
		{"fewer workers than items", 50, 4},
		{"more workers than items", 5, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				items := make([]int, tt.n)
				for i := range items {
					items[i] = i
				}
				// Later items finish first, so completion order is the
				// reverse of input order.
				out, err := fanout.Map(t.Context(), items, func(ctx context.Context, i int) (string, error) {
					time.Sleep(time.Duration(tt.n-i) * time.Millisecond)
					return fmt.Sprint("v", i), nil
				}, fanout.Limit(tt.limit))
				require.NoError(t, err)
				require.Len(t, out, tt.n)
				for i, v := range out {
					require.Equal(t, fmt.Sprint("v", i), v)
				}
			})
		})
	}
}

func TestMapEmptyInputCallsNothing(t *testing.T) {
	for name, items := range map[string][]int{"nil slice": nil, "empty slice": {}} {
		t.Run(name, func(t *testing.T) {
			var tr tracker
			out, err := fanout.Map(t.Context(), items, func(context.Context, int) (int, error) {
				tr.enter()
				return 0, nil
			})
			require.NoError(t, err)
			require.NotNil(t, out)
			require.Empty(t, out)
			require.Zero(t, tr.calls.Load())
		})
	}
}

func TestMapNeverRunsMoreThanLimit(t *testing.T) {
	for _, limit := range []int{1, 3, 8} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracker
				start := time.Now()
				_, err := fanout.Map(t.Context(), make([]int, 20), func(ctx context.Context, _ int) (int, error) {
					tr.enter()
					defer tr.exit()
					return 0, sleep(ctx, 10*time.Millisecond)
				}, fanout.Limit(limit))
				require.NoError(t, err)
				require.Equal(t, int64(20), tr.calls.Load())
				// Every call overlaps its peers, so the peak is exactly the
				// limit, and the calls run in ceil(20/limit) waves.
				require.Equal(t, int64(limit), tr.peak.Load())
				require.Equal(t, time.Duration((20+limit-1)/limit)*10*time.Millisecond, time.Since(start))
			})
		})
	}
}

func TestMapDefaultLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr tracker
		_, err := fanout.Map(t.Context(), make([]int, 3*fanout.DefaultLimit), func(ctx context.Context, _ int) (int, error) {
			tr.enter()
			defer tr.exit()
			return 0, sleep(ctx, time.Millisecond)
		})
		require.NoError(t, err)
		require.Equal(t, int64(fanout.DefaultLimit), tr.peak.Load())
	})
}

func TestMapFailFast(t *testing.T) {
	t.Run("a slow item sees ctx.Done after a sibling fails", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var sawCancel bool
			start := time.Now()
			_, err := fanout.Map(t.Context(), []int{0, 1}, func(ctx context.Context, i int) (int, error) {
				if i == 1 {
					time.Sleep(10 * time.Millisecond)
					return 0, errBoom
				}
				err := sleep(ctx, time.Hour)
				sawCancel = errors.Is(err, context.Canceled)
				return 0, err
			}, fanout.Limit(2))
			require.True(t, sawCancel, "the slow item's context was not cancelled")
			require.Equal(t, 10*time.Millisecond, time.Since(start))
			var ie *fanout.ItemError
			require.ErrorAs(t, err, &ie)
			require.Equal(t, 1, ie.Index)
			require.ErrorIs(t, err, errBoom)
			require.NotErrorIs(t, err, context.Canceled, "the cancellation echo must be left out")
		})
	})
	t.Run("no item starts after the first failure", func(t *testing.T) {
		var tr tracker
		_, err := fanout.Map(t.Context(), make([]int, 10), func(context.Context, int) (int, error) {
			tr.enter()
			return 0, errBoom
		}, fanout.Limit(1))
		require.ErrorIs(t, err, errBoom)
		require.Equal(t, int64(1), tr.calls.Load())
	})
	t.Run("returns only once every started call has returned", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var tr tracker
			start := time.Now()
			_, err := fanout.Map(t.Context(), []int{0, 1, 2}, func(ctx context.Context, i int) (int, error) {
				tr.enter()
				defer tr.exit()
				if i == 0 {
					time.Sleep(time.Millisecond) // the others have started by now
					return 0, errBoom
				}
				// Ignores ctx for a while, as a careless upstream call does.
				time.Sleep(time.Duration(i) * 50 * time.Millisecond)
				return i, nil
			}, fanout.Limit(3))
			require.ErrorIs(t, err, errBoom)
			require.Zero(t, tr.running.Load())
			require.Equal(t, int64(3), tr.calls.Load())
			require.Equal(t, 100*time.Millisecond, time.Since(start))
		})
	})
	t.Run("failures before the cancellation is seen are joined, first first", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			errLate := errors.New("late")
			_, err := fanout.Map(t.Context(), []int{0, 1, 2}, func(ctx context.Context, i int) (int, error) {
				switch i {
				case 0:
					time.Sleep(20 * time.Millisecond) // does not look at ctx
					return 0, errLate
				case 1:
					time.Sleep(10 * time.Millisecond)
					return 0, errBoom
				}
				return 0, sleep(ctx, time.Hour)
			}, fanout.Limit(3))
			joined, ok := err.(interface{ Unwrap() []error })
			require.True(t, ok, "want a joined error, got %T", err)
			errs := joined.Unwrap()
			require.Len(t, errs, 2)
			require.Equal(t, &fanout.ItemError{Index: 1, Err: errBoom}, errs[0])
			require.Equal(t, &fanout.ItemError{Index: 0, Err: errLate}, errs[1])
		})
	})
}

func TestMapWithoutFailFastRunsEveryItem(t *testing.T) {
	var tr tracker
	out, err := fanout.Map(t.Context(), []int{0, 1, 2, 3, 4, 5}, func(ctx context.Context, i int) (int, error) {
		tr.enter()
		switch i {
		case 2:
			return 0, &codeError{code: 418}
		case 5:
			return 0, fmt.Errorf("item five: %w", errBoom)
		}
		return i * 10, ctx.Err()
	}, fanout.Limit(1), fanout.FailFast(false))
	require.Equal(t, int64(6), tr.calls.Load())
	require.Equal(t, []int{0, 10, 0, 30, 40, 0}, out, "values of the items that succeeded, zero elsewhere")
	require.ErrorIs(t, err, errBoom)
	var ce *codeError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, 418, ce.code)
	require.Len(t, err.(interface{ Unwrap() []error }).Unwrap(), 2)
	require.EqualError(t, err, "fanout: item 2: code 418\nfanout: item 5: item five: boom")
}

func TestMapContext(t *testing.T) {
	t.Run("already done: nothing is called and ctx.Err is returned", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var tr tracker
		out, err := fanout.Map(ctx, make([]int, 5), func(context.Context, int) (int, error) {
			tr.enter()
			return 1, nil
		})
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, make([]int, 5), out)
		require.Zero(t, tr.calls.Load())
	})
	t.Run("ends midway: returns promptly with ctx.Err and starts nothing more", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 25*time.Millisecond)
			defer cancel()
			var tr tracker
			start := time.Now()
			out, err := fanout.Map(ctx, []int{1, 2, 3, 4, 5, 6}, func(ctx context.Context, i int) (int, error) {
				tr.enter()
				return i, sleep(ctx, 10*time.Millisecond)
			}, fanout.Limit(1))
			require.Equal(t, 25*time.Millisecond, time.Since(start))
			require.Equal(t, context.DeadlineExceeded, err, "the echoes of ctx are left out, ctx.Err stands for them")
			require.Equal(t, int64(3), tr.calls.Load())
			require.Equal(t, []int{1, 2, 0, 0, 0, 0}, out)
		})
	})
	t.Run("ends midway without fail-fast: failures so far and ctx.Err", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 25*time.Millisecond)
			defer cancel()
			_, err := fanout.Map(ctx, []int{0, 1, 2, 3}, func(ctx context.Context, i int) (int, error) {
				if err := sleep(ctx, 10*time.Millisecond); err != nil {
					return 0, err
				}
				if i == 0 {
					return 0, errBoom
				}
				return i, nil
			}, fanout.Limit(1), fanout.FailFast(false))
			require.ErrorIs(t, err, errBoom)
			require.ErrorIs(t, err, context.DeadlineExceeded)
		})
	})
}

func TestMapReportsCtxErrWhenCtxEndsBeforeAFailure(t *testing.T) {
	for _, failFast := range []bool{true, false} {
		t.Run(fmt.Sprintf("failFast=%v", failFast), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			_, err := fanout.Map(ctx, []int{0, 1, 2}, func(ctx context.Context, i int) (int, error) {
				cancel()
				return 0, errBoom // a failure of its own, not an echo of ctx
			}, fanout.Limit(1), fanout.FailFast(failFast))
			require.Equal(t, []error{context.Canceled, &fanout.ItemError{Index: 0, Err: errBoom}}, flatten(err))
		})
	}
}

func TestMapPerItemTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var deadlines []time.Duration
		out, err := fanout.Map(t.Context(), []time.Duration{10 * time.Millisecond, 50 * time.Millisecond}, func(ctx context.Context, d time.Duration) (time.Duration, error) {
			dl, ok := ctx.Deadline()
			require.True(t, ok)
			deadlines = append(deadlines, dl.Sub(start))
			return d, sleep(ctx, d)
		}, fanout.Timeout(30*time.Millisecond), fanout.Limit(1), fanout.FailFast(false))
		require.Equal(t, []time.Duration{10 * time.Millisecond, 0}, out)
		// Each call's deadline counts from its own start.
		require.Equal(t, []time.Duration{30 * time.Millisecond, 40 * time.Millisecond}, deadlines)
		require.Equal(t, &fanout.ItemError{Index: 1, Err: context.DeadlineExceeded}, err)
		require.Equal(t, 40*time.Millisecond, time.Since(start))
	})
}

func TestMapPanicBecomesPanicError(t *testing.T) {
	tests := []struct {
		name      string
		value     any
		unwrapsTo error
	}{
		{"panic with an error value unwraps to it", errBoom, errBoom},
		{"panic with a string does not unwrap", "kaput", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := fanout.Map(t.Context(), []int{0, 1, 2}, func(_ context.Context, i int) (int, error) {
				if i == 1 {
					panicker(tt.value)
				}
				return i + 1, nil
			}, fanout.Limit(1), fanout.FailFast(false))
			require.Equal(t, []int{1, 0, 3}, out, "the worker goes on after the panic")
			var pe *fanout.PanicError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tt.value, pe.Value)
			require.Contains(t, string(pe.Stack), "panicker", "the stack shows where the panic happened")
			require.Equal(t, tt.unwrapsTo, pe.Unwrap())
			if tt.unwrapsTo != nil {
				require.ErrorIs(t, err, tt.unwrapsTo)
			}
			var ie *fanout.ItemError
			require.ErrorAs(t, err, &ie)
			require.Equal(t, 1, ie.Index)
			require.Contains(t, err.Error(), fmt.Sprint("fanout: item 1: fanout: panic: ", tt.value))
		})
	}
	t.Run("every item panics and every item is still reported", func(t *testing.T) {
		_, err := fanout.Map(t.Context(), make([]int, 50), func(context.Context, int) (int, error) {
			panic("always")
		}, fanout.Limit(2), fanout.FailFast(false))
		require.Len(t, err.(interface{ Unwrap() []error }).Unwrap(), 50)
	})
	t.Run("a panic is a failure that stops the run under fail-fast", func(t *testing.T) {
		var tr tracker
		_, err := fanout.Map(t.Context(), make([]int, 10), func(context.Context, int) (int, error) {
			tr.enter()
			panic(context.Canceled) // a panic is never mistaken for a cancellation echo
		}, fanout.Limit(1))
		var pe *fanout.PanicError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, int64(1), tr.calls.Load())
	})
}

//go:noinline
func panicker(v any) { panic(v) }

func TestMapRejectsBadInput(t *testing.T) {
	fn := func(context.Context, int) (int, error) { return 0, nil }
	var nilCtx context.Context
	out, err := fanout.Map(nilCtx, []int{1}, fn)
	require.Nil(t, out)
	require.EqualError(t, err, "fanout: nil Context")
	out, err = fanout.Map[int, int](t.Context(), []int{1}, nil)
	require.Nil(t, out)
	require.EqualError(t, err, "fanout: nil function")
}
