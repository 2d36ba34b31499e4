package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrWouldExceedDeadline is returned by [Wait] when ctx's deadline comes
// before the request could be admitted, so waiting would be pointless.
var ErrWouldExceedDeadline = errors.New("ratelimit: admission would come after the context deadline")

// Wait blocks until l admits cost n for key, sleeping each denial's
// RetryAfter, and returns the admitting Result. It works with any Limiter,
// including the Redis ones; the token bucket has its own [TokenBucket.Wait]
// that reserves its place instead of polling.
//
// Wait returns ctx's error if ctx ends while it sleeps, an error wrapping
// [ErrWouldExceedDeadline] at once if ctx's deadline is sooner than the
// next RetryAfter, and any error from l.AllowN unchanged.
func Wait(ctx context.Context, l Limiter, key string, n int) (Result, error) {
	for {
		res, err := l.AllowN(ctx, key, n)
		if err != nil || res.Allowed {
			return res, err
		}
		wait := max(res.RetryAfter, time.Microsecond)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return res, fmt.Errorf("%w: retry after %v", ErrWouldExceedDeadline, res.RetryAfter)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, ctx.Err()
		case <-t.C:
		}
	}
}
