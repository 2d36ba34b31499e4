package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors returned by every [Limiter] for bad calls. They are part of the
// contract that [github.com/asynckit/asynckit/ratelimit/ratelimittest.Run]
// checks, so callers can branch on them with errors.Is whatever the backend.
var (
	// ErrInvalidLimit reports a Limit with a rate, period or burst that is
	// zero or negative, or too fine to represent.
	ErrInvalidLimit = errors.New("ratelimit: invalid limit")
	// ErrInvalidCost reports a cost n of zero or less.
	ErrInvalidCost = errors.New("ratelimit: cost must be at least 1")
	// ErrCostExceedsBurst reports a cost n greater than the limit's burst:
	// such a request could never be admitted, so it is an error rather than a
	// silent, permanent deny.
	ErrCostExceedsBurst = errors.New("ratelimit: cost exceeds burst")
	// ErrEmptyKey reports an empty key. An empty key usually means a key
	// function failed, and limiting every caller under one shared key would
	// turn one bad request into an outage for all.
	ErrEmptyKey = errors.New("ratelimit: empty key")
)

// Limit is a quota: Rate events per Period, with bursts of up to Burst
// events at once. The zero Limit is invalid.
//
// For GCRA and the token bucket, Burst is the bucket size and Rate/Period
// the refill speed. The sliding windows admit Rate events in any Period and
// need Burst == Rate. The concurrency limiter admits Burst holders at once,
// each lease lasting Period.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

// PerSecond returns the Limit of n events per second with a burst of n.
// n < 1 gives a Limit that [Limit.Validate] rejects.
func PerSecond(n int) Limit { return Limit{Rate: n, Period: time.Second, Burst: n} }

// PerMinute returns the Limit of n events per minute with a burst of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute, Burst: n} }

// PerHour returns the Limit of n events per hour with a burst of n.
func PerHour(n int) Limit { return Limit{Rate: n, Period: time.Hour, Burst: n} }

// PerDay returns the Limit of n events per 24 hours with a burst of n.
func PerDay(n int) Limit { return Limit{Rate: n, Period: 24 * time.Hour, Burst: n} }

// NewLimit returns Limit{rate, period, burst}, or an error wrapping
// [ErrInvalidLimit] if any of them is zero or negative or if period/rate is
// below one microsecond (the finest interval the Redis limiters keep).
func NewLimit(rate int, period time.Duration, burst int) (Limit, error) {
	l := Limit{Rate: rate, Period: period, Burst: burst}
	return l, l.Validate()
}

// WithBurst returns a copy of l with its Burst set to b. It does not
// validate; the limiter constructors do.
func (l Limit) WithBurst(b int) Limit { l.Burst = b; return l }

// Validate returns nil if l can be enforced, or an error wrapping
// [ErrInvalidLimit] saying what is wrong.
func (l Limit) Validate() error {
	switch {
	case l.Rate <= 0:
		return fmt.Errorf("%w: rate %d must be positive", ErrInvalidLimit, l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("%w: period %v must be positive", ErrInvalidLimit, l.Period)
	case l.Burst <= 0:
		return fmt.Errorf("%w: burst %d must be positive", ErrInvalidLimit, l.Burst)
	case l.Period/time.Duration(l.Rate) < time.Microsecond:
		return fmt.Errorf("%w: %d per %v is finer than one event per microsecond", ErrInvalidLimit, l.Rate, l.Period)
	case l.Period > 366*24*time.Hour:
		return fmt.Errorf("%w: period %v is longer than a year", ErrInvalidLimit, l.Period)
	}
	return nil
}

// Interval returns the emission interval Period/Rate, rounded up to the
// nanosecond so that a limiter never admits faster than the Limit says. It
// is 0 for a Rate below 1.
func (l Limit) Interval() time.Duration {
	if l.Rate < 1 {
		return 0
	}
	return (l.Period + time.Duration(l.Rate) - 1) / time.Duration(l.Rate)
}

// String formats l as "100/1m0s burst 100".
func (l Limit) String() string {
	return fmt.Sprintf("%d/%v burst %d", l.Rate, l.Period, l.Burst)
}

// Result is the outcome of one decision.
type Result struct {
	// Allowed reports whether the request was admitted. A denied request
	// consumes nothing.
	Allowed bool
	// Limit is the quota the decision was taken against.
	Limit Limit
	// Remaining is how many more unit-cost requests would be admitted right
	// now, after this decision.
	Remaining int
	// RetryAfter is zero when Allowed. Otherwise it is the shortest wait
	// after which the same request would be admitted if nothing else
	// consumed the quota meanwhile. It is exact at the limiter's resolution
	// (nanoseconds in memory, microseconds in Redis); HTTP middleware rounds
	// it up to whole seconds.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to its full quota if no
	// more requests arrive.
	ResetAfter time.Duration
}

// Limiter decides whether the caller named by key may spend n units of its
// quota now.
//
// AllowN returns an error, and no decision, for n < 1 ([ErrInvalidCost]),
// n > Burst ([ErrCostExceedsBurst]), an empty key ([ErrEmptyKey]), a ctx
// that is already done (ctx.Err()), or a store that fails. A denied request
// is not an error: it is a Result with Allowed false.
type Limiter interface {
	AllowN(ctx context.Context, key string, n int) (Result, error)
}

// Allow is AllowN(ctx, key, 1) on l.
func Allow(ctx context.Context, l Limiter, key string) (Result, error) {
	return l.AllowN(ctx, key, 1)
}

// CheckCall returns the error AllowN must return for key and n under lim,
// or nil if the call is valid. Limiter implementations outside this package
// use it so that every backend rejects bad calls alike.
func CheckCall(ctx context.Context, lim Limit, key string, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: got %d", ErrInvalidCost, n)
	}
	if n > lim.Burst {
		return fmt.Errorf("%w: cost %d, burst %d", ErrCostExceedsBurst, n, lim.Burst)
	}
	if key == "" {
		return ErrEmptyKey
	}
	return ctx.Err()
}
