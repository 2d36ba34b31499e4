package ratelimittest_test

import (
	"testing"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/ratelimittest"
)

// A limiter's own test file runs the whole suite against it. An in-memory
// limiter reads time.Now, so the suite runs each check in a synctest bubble
// and its time is exact; a limiter whose clock is Redis's leaves Synctest
// unset.
func ExampleRun() {
	testGCRA := func(t *testing.T) {
		ratelimittest.Run(t, ratelimittest.Config{
			New: func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error) {
				return ratelimit.NewGCRA(lim, ratelimit.Options{MaxKeys: 1000})
			},
			Synctest: true,
		})
	}
	_ = testGCRA // in a _test.go file: func TestGCRA(t *testing.T) { … }
}
