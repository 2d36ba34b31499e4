package fanout

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// DefaultLimit is how many calls run at once when no [Limit] option is given.
//
// Fan-out is mostly waiting on I/O (upstream requests, queries), so the
// useful concurrency is set by the service being called, not by GOMAXPROCS.
// A fixed bound of 16 lets the common case, a handful of upstream calls,
// run fully in parallel, while a large input (thousands of IDs) cannot open
// thousands of connections at once, exhaust file descriptors, or flood a
// database pool and the server behind it. An unbounded default would make
// that the accident; pass Limit to choose deliberately.
const DefaultLimit = 16

// Option is one per-call setting of a fan-out: [Limit], [Rate], [Timeout],
// [FailFast] or [Hedge]. Options are applied in order, so a later option
// overrides an earlier one of the same kind. An invalid option does not
// panic: the function it is passed to reports an error wrapping
// [ErrInvalidOption] and calls nothing.
type Option func(*config)

// op names the function a config is built for, since some options apply to
// only some of them.
type op uint8

const (
	opMap op = iota
	opSettle
	opDo
	opFirst
	opStream
)

func (o op) String() string {
	return [...]string{"Map", "Settle", "Do", "First", "Stream"}[o]
}

// config is the resolved set of options for one call.
type config struct {
	limit       int
	rate        rate.Limit
	burst       int
	timeout     time.Duration
	failFast    bool
	failFastSet bool
	hedge       time.Duration
	err         error
}

// invalid returns an Option that records err, keeping the first such error.
func invalid(format string, args ...any) Option {
	err := fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
	return func(c *config) {
		if c.err == nil {
			c.err = err
		}
	}
}

// Limit sets the most calls that run at the same time, which is also the
// number of worker goroutines started (never more than there are items).
// The default is [DefaultLimit]. n below 1 is an error wrapping
// [ErrInvalidOption], never "unlimited".
func Limit(n int) Option {
	if n < 1 {
		return invalid("Limit(%d): the limit must be at least 1", n)
	}
	return func(c *config) { c.limit = n }
}

// Rate paces the starts of calls with a token bucket
// (golang.org/x/time/rate): on average r starts per second, with bursts of up
// to burst starts. Each fan-out gets a bucket of its own, which starts full.
// Pacing composes with [Limit]: a call starts when it has both a token and a
// free slot.
//
// An item that cannot get a token before the context ends never starts; when
// the context's deadline is too close for the next token, the fan-out stops
// at once rather than wait, and such items report an error wrapping
// context.DeadlineExceeded. r must be above 0 (rate.Inf disables pacing)
// and burst at least 1; anything else is an error wrapping
// [ErrInvalidOption].
func Rate(r rate.Limit, burst int) Option {
	if !(r > 0) { // also rejects NaN
		return invalid("Rate(%v, %d): the rate must be above 0", float64(r), burst)
	}
	if burst < 1 {
		return invalid("Rate(%v, %d): the burst must be at least 1", float64(r), burst)
	}
	return func(c *config) { c.rate, c.burst = r, burst }
}

// Timeout gives each call a context that ends d after the call starts. The
// deadline is cooperative: a call that ignores its context runs on, and
// the fan-out still waits for it. d must be above 0; otherwise the result is
// an error wrapping [ErrInvalidOption].
func Timeout(d time.Duration) Option {
	if d <= 0 {
		return invalid("Timeout(%v): the timeout must be above 0", d)
	}
	return func(c *config) { c.timeout = d }
}

// FailFast chooses what the first failure does in [Map] and [Do], where it
// is on by default: it cancels the context of the calls still running and
// no further call starts. FailFast(false) lets every call run and returns
// all the failures joined.
//
// Settle and Stream never fail fast (each item reports its own result; a
// Stream loop stops the rest by breaking), and First stops at the first
// success instead, so passing FailFast to them is an error wrapping
// [ErrInvalidOption].
func FailFast(on bool) Option {
	return func(c *config) { c.failFast, c.failFastSet = on, true }
}

// Hedge makes [First] a hedged request: it starts the first function alone,
// and starts the next one only when no call has succeeded within d of the
// last start, or at once when a running call fails. Replicas are thus
// called only when the ones already asked are slow. Without Hedge, First
// starts all its functions at once, up to the [Limit].
//
// d must be above 0, and Hedge applies only to First; otherwise the result
// is an error wrapping [ErrInvalidOption].
func Hedge(d time.Duration) Option {
	if d <= 0 {
		return invalid("Hedge(%v): the delay must be above 0", d)
	}
	return func(c *config) { c.hedge = d }
}

// newConfig applies opts for the function o and checks that each applies.
func newConfig(o op, opts []Option) (*config, error) {
	c := &config{limit: DefaultLimit, failFast: o == opMap || o == opDo}
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("%w: option %d is nil", ErrInvalidOption, i)
		}
		opt(c)
	}
	switch {
	case c.err != nil:
		return nil, c.err
	case c.hedge > 0 && o != opFirst:
		return nil, fmt.Errorf("%w: Hedge applies only to First, not %v", ErrInvalidOption, o)
	case c.failFastSet && o != opMap && o != opDo:
		return nil, fmt.Errorf("%w: FailFast applies only to Map and Do, not %v", ErrInvalidOption, o)
	}
	return c, nil
}

// limiter returns a fresh token bucket for one run, or nil without Rate.
func (c *config) limiter() *rate.Limiter {
	if c.burst == 0 || c.rate == rate.Inf {
		return nil
	}
	return rate.NewLimiter(c.rate, c.burst)
}
