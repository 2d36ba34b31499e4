package ratelimittest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynckit/asynckit/ratelimit"
)

// Config describes the limiter under test.
type Config struct {
	// New returns a fresh limiter enforcing lim, with no keys in use. It is
	// called once per check, inside the check's bubble when Synctest is set.
	// Its t is the check's, for cleanup.
	New func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error)
	// Synctest runs each check in a testing/synctest bubble. Set it for
	// limiters that read time.Now; leave it unset for limiters whose clock
	// is elsewhere (Redis TIME).
	Synctest bool
}

// Run runs the conformance checks against the limiters c.New returns, each
// as a subtest of t. Limits in the suite have Burst equal to Rate and a
// Period divisible by Rate, so every limiter kind accepts them and no
// rounding is involved.
func Run(t *testing.T, c Config) {
	t.Helper()
	if c.New == nil {
		t.Fatal("ratelimittest: Config.New is nil")
	}
	for _, ch := range checks {
		t.Run(ch.name, func(t *testing.T) {
			body := func(t *testing.T) {
				l, err := c.New(t, ch.lim)
				if err != nil {
					t.Fatalf("New(%v): %v", ch.lim, err)
				}
				ch.run(t, &env{l: l, lim: ch.lim, synthetic: c.Synctest})
			}
			if c.Synctest {
				synctest.Test(t, body)
			} else {
				body(t)
			}
		})
	}
}

type env struct {
	l         ratelimit.Limiter
	lim       ratelimit.Limit
	synthetic bool
}

func (e *env) allow(t *testing.T, key string, n int) ratelimit.Result {
	t.Helper()
	res, err := e.l.AllowN(context.Background(), key, n)
	if err != nil {
		t.Fatalf("AllowN(%q, %d): %v", key, n, err)
	}
	if res.Limit != e.lim {
		t.Fatalf("AllowN(%q, %d): Result.Limit = %v, want %v", key, n, res.Limit, e.lim)
	}
	if res.Remaining < 0 || res.Remaining > e.lim.Burst {
		t.Fatalf("AllowN(%q, %d): Remaining = %d, outside [0, %d]", key, n, res.Remaining, e.lim.Burst)
	}
	if res.Allowed && res.RetryAfter != 0 {
		t.Fatalf("AllowN(%q, %d): allowed with RetryAfter %v, want 0", key, n, res.RetryAfter)
	}
	if !res.Allowed && (res.RetryAfter <= 0 || res.RetryAfter > res.ResetAfter) {
		t.Fatalf("AllowN(%q, %d): denied with RetryAfter %v, want in (0, ResetAfter %v]", key, n, res.RetryAfter, res.ResetAfter)
	}
	if res.ResetAfter < 0 || res.ResetAfter > 2*e.lim.Period {
		t.Fatalf("AllowN(%q, %d): ResetAfter %v outside [0, 2×Period]", key, n, res.ResetAfter)
	}
	return res
}

// exhaust spends key's whole burst in unit requests, checking Remaining
// counts down, and returns the last (allowed) result.
func (e *env) exhaust(t *testing.T, key string) ratelimit.Result {
	t.Helper()
	var last ratelimit.Result
	for i := range e.lim.Burst {
		last = e.allow(t, key, 1)
		if !last.Allowed {
			t.Fatalf("request %d of a burst of %d on a fresh key was denied: %+v", i+1, e.lim.Burst, last)
		}
		if want := e.lim.Burst - 1 - i; last.Remaining != want {
			t.Fatalf("request %d of %d: Remaining = %d, want %d", i+1, e.lim.Burst, last.Remaining, want)
		}
	}
	return last
}

type check struct {
	name string
	lim  ratelimit.Limit
	run  func(t *testing.T, e *env)
}

var (
	hourly = ratelimit.Limit{Rate: 5, Period: time.Hour, Burst: 5}
	// quick is slow enough that a scheduling stall of a busy machine does
	// not refill a unit in the middle of a real-time check.
	quick = ratelimit.Limit{Rate: 4, Period: time.Second, Burst: 4}
)

var checks = []check{
	{"bad calls are errors", hourly, func(t *testing.T, e *env) {
		ctx := context.Background()
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		for _, tc := range []struct {
			name string
			ctx  context.Context
			key  string
			n    int
			want error
		}{
			{"zero cost", ctx, "k", 0, ratelimit.ErrInvalidCost},
			{"negative cost", ctx, "k", -1, ratelimit.ErrInvalidCost},
			{"cost above burst", ctx, "k", e.lim.Burst + 1, ratelimit.ErrCostExceedsBurst},
			{"empty key", ctx, "", 1, ratelimit.ErrEmptyKey},
			{"canceled context", canceled, "k", 1, context.Canceled},
		} {
			res, err := e.l.AllowN(tc.ctx, tc.key, tc.n)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: AllowN error = %v, want %v", tc.name, err, tc.want)
			}
			if res.Allowed {
				t.Errorf("%s: AllowN admitted a bad call", tc.name)
			}
		}
		// None of the bad calls spent anything.
		e.exhaust(t, "k")
	}},
	{"a fresh key admits its burst and then denies", hourly, func(t *testing.T, e *env) {
		e.exhaust(t, "k")
		for range 3 {
			res := e.allow(t, "k", 1)
			if res.Allowed || res.Remaining != 0 {
				t.Fatalf("request past the burst: %+v, want denied with Remaining 0", res)
			}
		}
	}},
	{"cost n spends n and a denied request spends nothing", hourly, func(t *testing.T, e *env) {
		if res := e.allow(t, "k", 3); !res.Allowed || res.Remaining != 2 {
			t.Fatalf("AllowN(3) of 5: %+v, want allowed with Remaining 2", res)
		}
		if res := e.allow(t, "k", 3); res.Allowed || res.Remaining != 2 {
			t.Fatalf("AllowN(3) with 2 left: %+v, want denied with Remaining 2", res)
		}
		if res := e.allow(t, "k", 2); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("AllowN(2) with 2 left: %+v, want allowed with Remaining 0", res)
		}
		if res := e.allow(t, "k", 1); res.Allowed {
			t.Fatalf("AllowN(1) with 0 left: %+v, want denied", res)
		}
	}},
	{"keys are independent", hourly, func(t *testing.T, e *env) {
		e.exhaust(t, "a")
		e.exhaust(t, "b")
		if res := e.allow(t, "a", 1); res.Allowed {
			t.Fatalf("exhausted key a admitted a request: %+v", res)
		}
	}},
	{"a denied request is admitted after RetryAfter and not before", quick, func(t *testing.T, e *env) {
		for round := range 3 {
			// Spend whatever is left, so the next request is denied.
			var res ratelimit.Result
			for i := 0; ; i++ {
				if i > e.lim.Burst {
					t.Fatalf("round %d: %d requests in a row were admitted, burst is %d", round, i, e.lim.Burst)
				}
				if res = e.allow(t, "k", 1); !res.Allowed {
					break
				}
			}
			if e.synthetic {
				time.Sleep(res.RetryAfter - time.Nanosecond)
				if early := e.allow(t, "k", 1); early.Allowed {
					t.Fatalf("round %d: admitted 1ns before RetryAfter %v", round, res.RetryAfter)
				}
				time.Sleep(time.Nanosecond)
			} else {
				time.Sleep(res.RetryAfter)
			}
			if res := e.allow(t, "k", 1); !res.Allowed {
				t.Fatalf("round %d: denied after sleeping RetryAfter: %+v", round, res)
			}
		}
	}},
	{"the whole quota is back after ResetAfter", quick, func(t *testing.T, e *env) {
		last := e.exhaust(t, "k")
		if last.ResetAfter <= 0 {
			t.Fatalf("ResetAfter after spending the burst = %v, want > 0", last.ResetAfter)
		}
		time.Sleep(last.ResetAfter)
		e.exhaust(t, "k")
	}},
	{"64 goroutines racing on one key are admitted exactly burst times", ratelimit.Limit{Rate: 50, Period: time.Hour, Burst: 50}, func(t *testing.T, e *env) {
		var admitted, denied atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 64 {
			wg.Go(func() {
				for range 4 {
					res, err := e.l.AllowN(context.Background(), "hot", 1)
					if err != nil {
						errs <- err
						return
					}
					if res.Allowed {
						admitted.Add(1)
					} else {
						denied.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("AllowN under contention: %v", err)
		}
		if got := admitted.Load(); got != int64(e.lim.Burst) {
			t.Fatalf("admitted %d of 256, want exactly %d", got, e.lim.Burst)
		}
		if got := denied.Load(); got != 256-int64(e.lim.Burst) {
			t.Fatalf("denied %d of 256, want %d", got, 256-e.lim.Burst)
		}
	}},
}
