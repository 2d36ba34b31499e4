package ratelimittest_test

import (
	"context"
	"errors"
	"fmt"
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

// downStore is a store that always fails, as a Redis that is down would.
type downStore struct{}

func (downStore) AllowN(context.Context, string, int) (ratelimit.Result, error) {
	return ratelimit.Result{}, errors.New("connection refused")
}

func (downStore) Limit() ratelimit.Limit { return ratelimit.PerSecond(10) }

// A Recorder shows what a failure policy did on each call: here the store
// fails twice, which opens the breaker, and the third call is denied
// without trying the store (no error).
func ExampleRecorder() {
	var rec ratelimittest.Recorder
	lim, err := ratelimit.WithFailurePolicy(downStore{}, ratelimit.FailClosed, ratelimit.FailureOptions{
		Failures: 2, Observe: rec.Observe,
	})
	if err != nil {
		panic(err)
	}
	for range 3 {
		_, _ = lim.AllowN(context.Background(), "k", 1)
	}
	for _, ev := range rec.Events() {
		fmt.Printf("%v, store error %t, breaker open %t\n", ev.Outcome, ev.Err != nil, ev.BreakerOpen)
	}
	fmt.Println("last allowed:", rec.Last().Result.Allowed)
	// Output:
	// failed closed, store error true, breaker open false
	// failed closed, store error true, breaker open true
	// failed closed, store error false, breaker open true
	// last allowed: false
}
