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

// replica is a simulated upstream replica for First: it answers after
// delay, honouring ctx, and records when it started and how it ended.
type replica struct {
	name    string
	delay   time.Duration
	err     error
	started time.Duration // offset from the test's start; -1 if never started
	ctxErr  error         // what its ctx said when it returned
}

func replicas(start time.Time, tr *tracker, rs ...*replica) []func(context.Context) (string, error) {
	fns := make([]func(context.Context) (string, error), len(rs))
	for i, r := range rs {
		r.started = -1
		fns[i] = func(ctx context.Context) (string, error) {
			tr.enter()
			defer tr.exit()
			r.started = time.Since(start)
			err := sleep(ctx, r.delay)
			r.ctxErr = ctx.Err()
			if err != nil {
				return "", err
			}
			return r.name, r.err
		}
	}
	return fns
}

func TestFirstWinnerAndLosers(t *testing.T) {
	t.Run("the fastest success wins; the losers are cancelled and awaited", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var tr tracker
			start := time.Now()
			a := &replica{name: "a", delay: 30 * time.Millisecond}
			b := &replica{name: "b", delay: 10 * time.Millisecond}
			c := &replica{name: "c", delay: time.Hour}
			v, err := fanout.First(t.Context(), replicas(start, &tr, a, b, c))
			require.NoError(t, err)
			require.Equal(t, "b", v)
			require.Equal(t, 10*time.Millisecond, time.Since(start))
			require.Zero(t, tr.running.Load(), "a loser was still running when First returned")
			require.ErrorIs(t, a.ctxErr, context.Canceled)
			require.ErrorIs(t, c.ctxErr, context.Canceled)
			require.NoError(t, b.ctxErr)
		})
	})
	t.Run("a fast failure does not win", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var tr tracker
			start := time.Now()
			v, err := fanout.First(t.Context(), replicas(start, &tr,
				&replica{name: "a", delay: time.Millisecond, err: errBoom},
				&replica{name: "b", delay: 20 * time.Millisecond}))
			require.NoError(t, err)
			require.Equal(t, "b", v)
		})
	})
	t.Run("a panic is a failure, not a crash", func(t *testing.T) {
		v, err := fanout.First(t.Context(), []func(context.Context) (int, error){
			func(context.Context) (int, error) { panic("replica down") },
			func(context.Context) (int, error) { time.Sleep(time.Millisecond); return 7, nil },
		})
		require.NoError(t, err)
		require.Equal(t, 7, v)
	})
	t.Run("when all fail, every error is returned in the order they failed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var tr tracker
			errA, errB := errors.New("a down"), errors.New("b down")
			v, err := fanout.First(t.Context(), replicas(time.Now(), &tr,
				&replica{name: "a", delay: 20 * time.Millisecond, err: errA},
				&replica{name: "b", delay: 10 * time.Millisecond, err: errB}))
			require.Empty(t, v)
			require.EqualError(t, err, "fanout: item 1: b down\nfanout: item 0: a down")
			require.ErrorIs(t, err, errA)
			require.ErrorIs(t, err, errB)
			var ie *fanout.ItemError
			require.ErrorAs(t, err, &ie)
			require.Equal(t, 1, ie.Index)
		})
	})
	t.Run("the limit holds and each failure starts the next", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var tr tracker
			start := time.Now()
			rs := []*replica{
				{name: "a", delay: 10 * time.Millisecond, err: errBoom},
				{name: "b", delay: 40 * time.Millisecond},
				{name: "c", delay: 10 * time.Millisecond},
			}
			v, err := fanout.First(t.Context(), replicas(start, &tr, rs...), fanout.Limit(2))
			require.NoError(t, err)
			require.Equal(t, "c", v)
			require.Equal(t, int64(2), tr.peak.Load())
			require.Equal(t, 10*time.Millisecond, rs[2].started)
			require.Equal(t, 20*time.Millisecond, time.Since(start))
		})
	})
	t.Run("per-call timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var tr tracker
			_, err := fanout.First(t.Context(), replicas(time.Now(), &tr,
				&replica{name: "a", delay: time.Hour}), fanout.Timeout(time.Second))
			require.Equal(t, &fanout.ItemError{Index: 0, Err: context.DeadlineExceeded}, err)
		})
	})
}

func TestFirstHedge(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		opts    []fanout.Option
		rs      []*replica
		want    string
		elapsed time.Duration
		starts  []time.Duration // per replica; -1: never started
	}{
		{
			name: "a fast answer calls no replica",
			opts: []fanout.Option{fanout.Hedge(30 * ms)},
			rs:   []*replica{{name: "a", delay: 10 * ms}, {name: "b", delay: ms}},
			want: "a", elapsed: 10 * ms, starts: []time.Duration{0, -1},
		},
		{
			name: "each hedge starts after d without an answer",
			opts: []fanout.Option{fanout.Hedge(30 * ms)},
			rs:   []*replica{{name: "a", delay: 100 * ms}, {name: "b", delay: 100 * ms}, {name: "c", delay: 100 * ms}, {name: "d", delay: 100 * ms}, {name: "e", delay: ms}},
			want: "a", elapsed: 100 * ms, starts: []time.Duration{0, 30 * ms, 60 * ms, 90 * ms, -1},
		},
		{
			name: "a hedge can win",
			opts: []fanout.Option{fanout.Hedge(30 * ms)},
			rs:   []*replica{{name: "a", delay: 100 * ms}, {name: "b", delay: 10 * ms}},
			want: "b", elapsed: 40 * ms, starts: []time.Duration{0, 30 * ms},
		},
		{
			name: "a failure starts the next at once",
			opts: []fanout.Option{fanout.Hedge(30 * ms)},
			rs:   []*replica{{name: "a", delay: 5 * ms, err: errBoom}, {name: "b", delay: 10 * ms}},
			want: "b", elapsed: 15 * ms, starts: []time.Duration{0, 5 * ms},
		},
		{
			name: "the limit caps the hedges in flight",
			opts: []fanout.Option{fanout.Hedge(10 * ms), fanout.Limit(2)},
			rs:   []*replica{{name: "a", delay: 50 * ms, err: errBoom}, {name: "b", delay: 100 * ms}, {name: "c", delay: 10 * ms}},
			want: "c", elapsed: 60 * ms, starts: []time.Duration{0, 10 * ms, 50 * ms},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var tr tracker
				start := time.Now()
				v, err := fanout.First(t.Context(), replicas(start, &tr, tt.rs...), tt.opts...)
				require.NoError(t, err)
				require.Equal(t, tt.want, v)
				require.Equal(t, tt.elapsed, time.Since(start))
				for i, r := range tt.rs {
					require.Equal(t, tt.starts[i], r.started, "start of %s", r.name)
				}
				require.Zero(t, tr.running.Load())
			})
		})
	}
}

func TestFirstContext(t *testing.T) {
	t.Run("already done: nothing is called", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		var tr tracker
		_, err := fanout.First(ctx, replicas(time.Now(), &tr, &replica{name: "a"}))
		require.Equal(t, context.Canceled, err)
		require.Zero(t, tr.calls.Load())
	})
	t.Run("ends midway: no further hedge starts and ctx.Err is returned", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 45*time.Millisecond)
			defer cancel()
			var tr tracker
			start := time.Now()
			rs := []*replica{{name: "a", delay: time.Hour}, {name: "b", delay: 10 * time.Millisecond, err: errBoom}, {name: "c", delay: time.Hour}}
			_, err := fanout.First(ctx, replicas(start, &tr, rs...), fanout.Hedge(30*time.Millisecond))
			require.Equal(t, 45*time.Millisecond, time.Since(start))
			require.EqualError(t, err, "fanout: item 1: boom\ncontext deadline exceeded")
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, 40*time.Millisecond, rs[2].started, "b's failure started c")
			require.Zero(t, tr.running.Load())
		})
	})
}

func TestFirstStartsNothingOnceCtxHasEnded(t *testing.T) {
	// The failure and the end of ctx arrive together; whichever First
	// sees first, it must start nothing more. Repeated, since the order
	// is the scheduler's.
	for range 20 {
		ctx, cancel := context.WithCancel(t.Context())
		var tr tracker
		_, err := fanout.First(ctx, []func(context.Context) (int, error){
			func(context.Context) (int, error) {
				tr.enter()
				cancel()
				return 0, errBoom // a failure of its own, which would start the next
			},
			func(context.Context) (int, error) { tr.enter(); return 1, nil },
		}, fanout.Limit(1))
		require.Equal(t, int64(1), tr.calls.Load(), "the second function started after ctx ended")
		require.Equal(t, []error{&fanout.ItemError{Index: 0, Err: errBoom}, context.Canceled}, flatten(err))
	}
}

func TestFirstRejectsBadInput(t *testing.T) {
	ok := func(context.Context) (int, error) { return 1, nil }
	tests := []struct {
		name string
		fns  []func(context.Context) (int, error)
		want string
	}{
		{"no functions", nil, "fanout: First needs at least one function"},
		{"a nil function", []func(context.Context) (int, error){ok, nil}, "fanout: nil function: fns[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fanout.First(t.Context(), tt.fns)
			require.EqualError(t, err, tt.want)
		})
	}
	var nilCtx context.Context
	_, err := fanout.First(nilCtx, []func(context.Context) (int, error){ok})
	require.EqualError(t, err, "fanout: nil Context")
}

func TestFirstRateDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
		defer cancel()
		var tr tracker
		fns := replicas(time.Now(), &tr,
			&replica{name: "a", delay: 5 * time.Millisecond, err: errBoom},
			&replica{name: "b", delay: 5 * time.Millisecond, err: errBoom},
			&replica{name: "c", delay: 5 * time.Millisecond, err: errBoom})
		start := time.Now()
		_, err := fanout.First(ctx, fns, fanout.Rate(10, 1), fanout.Limit(1))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, int64(2), tr.calls.Load(), "starts at 0 and 100ms fit; the third would start past the deadline")
		require.Equal(t, 105*time.Millisecond, time.Since(start))
	})
}
