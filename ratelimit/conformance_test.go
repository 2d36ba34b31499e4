package ratelimit_test

import (
	"testing"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/ratelimittest"
)

// TestConformance runs the shared suite against every in-memory limiter,
// with time under testing/synctest.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tc := range memoryLimiters {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ratelimittest.Run(t, ratelimittest.Config{
				New: func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error) {
					return tc.new(lim, ratelimit.Options{MaxKeys: 1000})
				},
				Synctest: true,
			})
		})
	}
}

type memoryLimiter struct {
	name string
	new  func(ratelimit.Limit, ratelimit.Options) (ratelimit.Limiter, error)
}

// memoryLimiters lists every in-memory limiter, for the suite and the
// benchmarks.
var memoryLimiters = []memoryLimiter{
	{"GCRA", func(l ratelimit.Limit, o ratelimit.Options) (ratelimit.Limiter, error) {
		return ratelimit.NewGCRA(l, o)
	}},
	{"TokenBucket", func(l ratelimit.Limit, o ratelimit.Options) (ratelimit.Limiter, error) {
		return ratelimit.NewTokenBucket(l, o)
	}},
	{"SlidingLog", func(l ratelimit.Limit, o ratelimit.Options) (ratelimit.Limiter, error) {
		return ratelimit.NewSlidingLog(l, o)
	}},
	{"SlidingWindow", func(l ratelimit.Limit, o ratelimit.Options) (ratelimit.Limiter, error) {
		return ratelimit.NewSlidingWindow(l, o)
	}},
	{"Concurrency", func(l ratelimit.Limit, o ratelimit.Options) (ratelimit.Limiter, error) {
		return ratelimit.NewConcurrency(l.Burst, l.Period, o)
	}},
}

// TestConformanceGuarded: a limiter wrapped by WithFailurePolicy, whose
// store is healthy, still passes the suite.
func TestConformanceGuarded(t *testing.T) {
	t.Parallel()
	ratelimittest.Run(t, ratelimittest.Config{
		New: func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error) {
			store, err := ratelimit.NewGCRA(lim, ratelimit.Options{})
			if err != nil {
				return nil, err
			}
			return ratelimit.WithFailurePolicy(store, ratelimit.FailClosed, ratelimit.FailureOptions{})
		},
		Synctest: true,
	})
}
