package fanout

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// A call that ends with runtime.Goexit (t.FailNow off the test goroutine,
// say) cannot be recovered like a panic: its goroutine ends. Its item must
// still be reported, and the remaining items must still run.
func TestGoexitIsReportedAndTheRestStillRuns(t *testing.T) {
	var calls atomic.Int64
	fn := func(_ context.Context, i int) (int, error) {
		calls.Add(1)
		if i%2 == 1 {
			runtime.Goexit()
		}
		return i, nil
	}
	items := []int{0, 1, 2, 3, 4, 5}

	t.Run("Map", func(t *testing.T) {
		calls.Store(0)
		out, err := Map(t.Context(), items, fn, Limit(1), FailFast(false))
		require.Equal(t, int64(6), calls.Load())
		require.Equal(t, []int{0, 0, 2, 0, 4, 0}, out)
		require.ErrorIs(t, err, errGoexit)
		require.Len(t, err.(interface{ Unwrap() []error }).Unwrap(), 3)
	})
	t.Run("Settle", func(t *testing.T) {
		calls.Store(0)
		res := Settle(t.Context(), items, fn, Limit(2))
		require.Equal(t, int64(6), calls.Load())
		for i, r := range res {
			if i%2 == 1 {
				require.Equal(t, Result[int]{Err: errGoexit}, r)
				continue
			}
			require.Equal(t, Result[int]{Value: i}, r)
		}
	})
	t.Run("Stream", func(t *testing.T) {
		calls.Store(0)
		n := 0
		for i, r := range Stream(t.Context(), items, fn, Limit(1)) {
			n++
			if i%2 == 1 {
				require.ErrorIs(t, r.Err, errGoexit)
			}
		}
		require.Equal(t, 6, n)
	})
	t.Run("First", func(t *testing.T) {
		v, err := First(t.Context(), []func(context.Context) (int, error){
			func(context.Context) (int, error) { runtime.Goexit(); return 0, nil },
			func(context.Context) (int, error) { return 0, nil },
		}, Limit(1))
		require.NoError(t, err)
		require.Zero(t, v)
		_, err = First(t.Context(), []func(context.Context) (int, error){
			func(context.Context) (int, error) { runtime.Goexit(); return 0, nil },
		})
		require.Equal(t, &ItemError{Index: 0, Err: errGoexit}, err)
	})
}
