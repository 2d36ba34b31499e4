package fanout_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/asynckit/asynckit/fanout"
)

// badOptions are options every function must refuse, with the message each
// one gives.
var badOptions = []struct {
	name string
	opt  fanout.Option
	want string
}{
	{"Limit(0)", fanout.Limit(0), "fanout: invalid option: Limit(0): the limit must be at least 1"},
	{"negative Limit", fanout.Limit(-3), "fanout: invalid option: Limit(-3): the limit must be at least 1"},
	{"zero Rate", fanout.Rate(0, 1), "fanout: invalid option: Rate(0, 1): the rate must be above 0"},
	{"negative Rate", fanout.Rate(-1, 1), "fanout: invalid option: Rate(-1, 1): the rate must be above 0"},
	{"NaN Rate", fanout.Rate(rate.Limit(math.NaN()), 1), "fanout: invalid option: Rate(NaN, 1): the rate must be above 0"},
	{"Rate burst 0", fanout.Rate(10, 0), "fanout: invalid option: Rate(10, 0): the burst must be at least 1"},
	{"Timeout(0)", fanout.Timeout(0), "fanout: invalid option: Timeout(0s): the timeout must be above 0"},
	{"negative Timeout", fanout.Timeout(-time.Second), "fanout: invalid option: Timeout(-1s): the timeout must be above 0"},
	{"Hedge(0)", fanout.Hedge(0), "fanout: invalid option: Hedge(0s): the delay must be above 0"},
	{"nil Option", nil, "fanout: invalid option: option 1 is nil"},
}

func TestInvalidOptionsAreErrorsAndCallNothing(t *testing.T) {
	for _, tt := range badOptions {
		t.Run(tt.name, func(t *testing.T) {
			var tr tracker
			fn := func(context.Context, int) (int, error) { tr.enter(); return 1, nil }
			opts := []fanout.Option{fanout.Limit(2), tt.opt}

			out, err := fanout.Map(t.Context(), []int{1, 2}, fn, opts...)
			require.Nil(t, out)
			require.ErrorIs(t, err, fanout.ErrInvalidOption)
			require.EqualError(t, err, tt.want)

			for _, r := range fanout.Settle(t.Context(), []int{1, 2}, fn, opts...) {
				require.ErrorIs(t, r.Err, fanout.ErrInvalidOption)
				require.EqualError(t, r.Err, tt.want)
			}

			var idx []int
			for i, r := range fanout.Stream(t.Context(), []int{1, 2, 3}, fn, opts...) {
				idx = append(idx, i)
				require.EqualError(t, r.Err, tt.want)
			}
			require.Equal(t, []int{0, 1, 2}, idx, "every item reports the error, in index order")

			err = fanout.Do(t.Context(), []func(context.Context) error{func(context.Context) error { tr.enter(); return nil }}, opts...)
			require.EqualError(t, err, tt.want)

			_, err = fanout.First(t.Context(), []func(context.Context) (int, error){func(context.Context) (int, error) { tr.enter(); return 1, nil }}, opts...)
			require.EqualError(t, err, tt.want)

			require.Zero(t, tr.calls.Load())
		})
	}
}

func TestOptionsApplyOnlyWhereTheyMeanSomething(t *testing.T) {
	fn := func(context.Context, int) (int, error) { return 1, nil }
	fns := []func(context.Context) (int, error){func(context.Context) (int, error) { return 1, nil }}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"Hedge on Map", second(fanout.Map(t.Context(), []int{1}, fn, fanout.Hedge(time.Second))), "fanout: invalid option: Hedge applies only to First, not Map"},
		{"Hedge on Settle", fanout.Settle(t.Context(), []int{1}, fn, fanout.Hedge(time.Second))[0].Err, "fanout: invalid option: Hedge applies only to First, not Settle"},
		{"Hedge on Do", fanout.Do(t.Context(), nil, fanout.Hedge(time.Second)), "fanout: invalid option: Hedge applies only to First, not Do"},
		{"FailFast on Settle", fanout.Settle(t.Context(), []int{1}, fn, fanout.FailFast(true))[0].Err, "fanout: invalid option: FailFast applies only to Map and Do, not Settle"},
		{"FailFast on First", second(fanout.First(t.Context(), fns, fanout.FailFast(false))), "fanout: invalid option: FailFast applies only to Map and Do, not First"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, tt.err, fanout.ErrInvalidOption)
			require.EqualError(t, tt.err, tt.want)
		})
	}
	t.Run("FailFast on Stream", func(t *testing.T) {
		for _, r := range fanout.Stream(t.Context(), []int{1}, fn, fanout.FailFast(false)) {
			require.EqualError(t, r.Err, "fanout: invalid option: FailFast applies only to Map and Do, not Stream")
		}
	})
}

func second[A, B any](_ A, b B) B { return b }

func TestLaterOptionOverridesEarlier(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr tracker
		_, err := fanout.Map(t.Context(), make([]int, 6), func(ctx context.Context, _ int) (int, error) {
			tr.enter()
			defer tr.exit()
			return 0, sleep(ctx, time.Millisecond)
		}, fanout.Limit(1), fanout.Limit(3))
		require.NoError(t, err)
		require.Equal(t, int64(3), tr.peak.Load())
	})
}

func TestRatePacesStarts(t *testing.T) {
	tests := []struct {
		name  string
		rate  rate.Limit
		burst int
		limit int
		want  []time.Duration // start offsets, in start order
	}{
		{"one per 100ms", 10, 1, 8, []time.Duration{0, 100, 200, 300, 400}},
		{"a burst of 3 then one per 100ms", 10, 3, 8, []time.Duration{0, 0, 0, 100, 200}},
		{"slow calls hold the limit: starts wait for both a token and a slot", 100, 1, 1, []time.Duration{0, 50, 100, 150, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, run := range []string{"Map", "Settle", "Stream"} {
				t.Run(run, func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						start := time.Now()
						starts := make(chan time.Duration, 5)
						fn := func(ctx context.Context, _ int) (int, error) {
							starts <- time.Since(start)
							return 0, sleep(ctx, 50*time.Millisecond)
						}
						opts := []fanout.Option{fanout.Rate(tt.rate, tt.burst), fanout.Limit(tt.limit)}
						switch run {
						case "Map":
							_, err := fanout.Map(t.Context(), make([]int, 5), fn, opts...)
							require.NoError(t, err)
						case "Settle":
							for _, r := range fanout.Settle(t.Context(), make([]int, 5), fn, opts...) {
								require.NoError(t, r.Err)
							}
						case "Stream":
							for _, r := range fanout.Stream(t.Context(), make([]int, 5), fn, opts...) {
								require.NoError(t, r.Err)
							}
						}
						close(starts)
						var got []time.Duration
						for d := range starts {
							got = append(got, d)
						}
						want := make([]time.Duration, len(tt.want))
						for i, ms := range tt.want {
							want[i] = ms * time.Millisecond
						}
						require.Equal(t, want, got)
					})
				})
			}
		})
	}
}

func TestRateStopsWhenTheDeadlineIsTooClose(t *testing.T) {
	t.Run("Map returns at once with DeadlineExceeded", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
			defer cancel()
			var tr tracker
			start := time.Now()
			_, err := fanout.Map(ctx, make([]int, 10), func(context.Context, int) (int, error) {
				tr.enter()
				return 0, nil
			}, fanout.Rate(10, 1), fanout.Limit(1))
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, int64(3), tr.calls.Load(), "starts at 0, 100 and 200ms fit before the deadline")
			require.Equal(t, 200*time.Millisecond, time.Since(start), "no waiting for a deadline that cannot be met")
		})
	})
	t.Run("Settle reports DeadlineExceeded for the items that never start", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
			defer cancel()
			res := fanout.Settle(ctx, make([]int, 5), func(context.Context, int) (int, error) {
				return 1, nil
			}, fanout.Rate(10, 1), fanout.Limit(1))
			for i, r := range res {
				if i < 3 {
					require.Equal(t, fanout.Result[int]{Value: 1}, r)
					continue
				}
				require.ErrorIs(t, r.Err, context.DeadlineExceeded)
			}
		})
	})
}

func TestTimeoutGivesEachCallItsOwnDeadline(t *testing.T) {
	const d = 30 * time.Millisecond
	// Each call sleeps 10ms before asking for its deadline's distance, and
	// honours its context for an hour: the call must end at its deadline.
	call := func(ctx context.Context) (time.Duration, error) {
		time.Sleep(10 * time.Millisecond)
		dl, ok := ctx.Deadline()
		if !ok {
			return 0, nil
		}
		left := time.Until(dl)
		return left, sleep(ctx, time.Hour)
	}
	fn := func(ctx context.Context, _ int) (time.Duration, error) { return call(ctx) }
	tests := []struct {
		name string
		run  func(t *testing.T, ctx context.Context) []fanout.Result[time.Duration]
	}{
		{"Map", func(t *testing.T, ctx context.Context) []fanout.Result[time.Duration] {
			var left time.Duration
			out, err := fanout.Map(ctx, []int{0}, func(ctx context.Context, _ int) (time.Duration, error) {
				var err error
				left, err = call(ctx)
				return left, err
			}, fanout.Timeout(d))
			require.Zero(t, out[0], "Map keeps no value for a failed item")
			return []fanout.Result[time.Duration]{{Value: left, Err: errors.Unwrap(err)}}
		}},
		{"Settle", func(t *testing.T, ctx context.Context) []fanout.Result[time.Duration] {
			return fanout.Settle(ctx, []int{0}, fn, fanout.Timeout(d))
		}},
		{"Stream", func(t *testing.T, ctx context.Context) []fanout.Result[time.Duration] {
			var res []fanout.Result[time.Duration]
			for _, r := range fanout.Stream(ctx, []int{0}, fn, fanout.Timeout(d)) {
				res = append(res, r)
			}
			return res
		}},
		{"Do", func(t *testing.T, ctx context.Context) []fanout.Result[time.Duration] {
			var left time.Duration
			err := fanout.Do(ctx, []func(context.Context) error{func(ctx context.Context) (err error) {
				left, err = call(ctx)
				return err
			}}, fanout.Timeout(d))
			return []fanout.Result[time.Duration]{{Value: left, Err: errors.Unwrap(err)}}
		}},
		{"First", func(t *testing.T, ctx context.Context) []fanout.Result[time.Duration] {
			var left time.Duration
			_, err := fanout.First(ctx, []func(context.Context) (int, error){func(ctx context.Context) (int, error) {
				var err error
				left, err = call(ctx)
				return 0, err
			}}, fanout.Timeout(d))
			return []fanout.Result[time.Duration]{{Value: left, Err: errors.Unwrap(err)}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				res := tt.run(t, t.Context())
				require.Equal(t, d, time.Since(start))
				require.Equal(t, []fanout.Result[time.Duration]{{Value: d - 10*time.Millisecond, Err: context.DeadlineExceeded}}, res)
			})
		})
	}
}
