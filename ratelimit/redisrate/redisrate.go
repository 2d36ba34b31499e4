package redisrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/ratelimit"
)

// Options configures a Redis limiter. The zero Options is ready to use.
type Options struct {
	// Prefix is put before every key the limiter writes: a key k is stored
	// as Prefix + "{" + k + "}", hash-tagged so that Redis Cluster maps it
	// to one slot. Limiters with different limits or algorithms must not
	// share a prefix. It must not contain '{' or '}'. Defaults to
	// "ratelimit:gcra:", "ratelimit:log:", "ratelimit:window:" or
	// "ratelimit:conc:" after the algorithm.
	Prefix string
	// Batch, above 1, lets up to Batch concurrent decisions share one
	// round trip. Up to 8 round trips are in flight at once, each on a
	// connection of the client's pool; a call that finds one of them free
	// goes out at once, alone, so batching adds no latency and no cost to
	// a limiter with few concurrent callers. When all 8 are out, calls
	// queue, and each round trip that returns sends the oldest of them
	// with up to Batch−1 of those behind it, as one pipeline. Each
	// decision is still its own atomic script. A call may wait for the
	// round trips ahead of it, and the call that sends a pipeline waits
	// for all of it (up to the latest deadline among its calls). Under
	// load it spends far fewer system calls per decision; see the package
	// doc for figures. The client must have a Pipeline method, as every
	// go-redis client has. 0 or 1 sends each decision on its own; at most
	// 1024.
	Batch int
}

// maxBatch bounds Options.Batch.
const maxBatch = 1024

// Limiter is a [ratelimit.Limiter] whose state lives in Redis, so that
// every instance using the same Redis and prefix shares one limit. Each
// decision is one atomic Lua script, sent with EVALSHA (falling back to
// EVAL once if Redis does not have it cached yet), which reads Redis's
// clock and sets the key's TTL: one round trip of its own, or, with
// Options.Batch, a share of one. Times are kept in
// microseconds: the emission interval of GCRA is Period/Rate rounded up to
// the microsecond, and RetryAfter and ResetAfter are exact microseconds.
//
// A Limiter is safe for concurrent use and holds no goroutine; closing the
// client is the caller's business.
type Limiter struct {
	c      redis.Scripter
	lim    ratelimit.Limit
	prefix string
	script *redis.Script
	batch  *batcher // nil unless Options.Batch > 1
	// The script's first two arguments, boxed once here rather than on
	// every call: for GCRA, tau and the interval in µs (int64s; the
	// interval is the increment of a call with n = 1); for the others,
	// the period or lease in µs (an int64) and the rate or max (an int).
	arg1, arg2 any
	// tau (Burst × interval) and interval are GCRA's, in µs, to read its
	// reply with.
	tau, interval int64
}

var _ ratelimit.Limiter = (*Limiter)(nil)

func newLimiter(c redis.Scripter, lim ratelimit.Limit, o Options, algo string, s *redis.Script, arg1 time.Duration, arg2 int) (*Limiter, error) {
	if c == nil {
		return nil, errors.New("redisrate: nil Redis client")
	}
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	if strings.ContainsAny(o.Prefix, "{}") {
		return nil, fmt.Errorf("redisrate: prefix %q must not contain braces", o.Prefix)
	}
	if o.Prefix == "" {
		o.Prefix = "ratelimit:" + algo + ":"
	}
	l := &Limiter{c: c, lim: lim, prefix: o.Prefix, script: s, arg1: ceilMicros(arg1), arg2: arg2}
	if o.Batch < 0 || o.Batch > maxBatch {
		return nil, fmt.Errorf("redisrate: Batch %d must be between 0 and %d", o.Batch, maxBatch)
	}
	if o.Batch > 1 {
		p, ok := c.(pipeliner)
		if !ok {
			return nil, fmt.Errorf("redisrate: Batch needs a client with a Pipeline method; %T has none", c)
		}
		l.batch = newBatcher(p, s, o.Batch)
	}
	return l, nil
}

func ceilMicros(d time.Duration) int64 { return int64((d + time.Microsecond - 1) / time.Microsecond) }

// NewGCRA returns a Limiter running the generic cell rate algorithm in
// Redis: one string per key holding its theoretical arrival time. Under
// continuous demand from an empty start it admits exactly
// Burst + ⌊elapsed / interval⌋, with interval = Period/Rate rounded up to
// the microsecond. c is any go-redis client (a redis.UniversalClient is a
// redis.Scripter). It returns an error for a nil client, an invalid lim, a
// prefix with braces, or a bad Batch.
func NewGCRA(c redis.Scripter, lim ratelimit.Limit, o Options) (*Limiter, error) {
	l, err := newLimiter(c, lim, o, "gcra", gcraScript, lim.Interval(), lim.Burst)
	if err != nil {
		return nil, err
	}
	l.interval = ceilMicros(lim.Interval())
	l.tau = int64(lim.Burst) * l.interval
	l.arg1, l.arg2 = l.tau, l.interval
	return l, nil
}

// NewSlidingLog returns a Limiter keeping an exact sliding log in Redis: a
// sorted set of the admissions in the last Period, at most Rate members.
// It admits at most Rate units in any span of Period. lim.Burst must equal
// lim.Rate; other errors are NewGCRA's.
func NewSlidingLog(c redis.Scripter, lim ratelimit.Limit, o Options) (*Limiter, error) {
	if lim.Burst != lim.Rate {
		return nil, fmt.Errorf("%w: a sliding log has no separate burst; got burst %d for rate %d", ratelimit.ErrInvalidLimit, lim.Burst, lim.Rate)
	}
	return newLimiter(c, lim, o, "log", logScript, lim.Period, lim.Rate)
}

// maxExact is 2^53: below it, Lua's doubles hold integers exactly.
const maxExact = 1 << 53

// NewSlidingWindow returns a Limiter running the sliding-window counter in
// Redis: a hash of three numbers per key, approximate in the same way as
// [ratelimit.SlidingWindow]. lim.Burst must equal lim.Rate, and Rate × Period
// in microseconds must stay below 2^53 so that the script's arithmetic is
// exact (for a day, a rate of up to about 100 million); other errors are
// NewGCRA's.
func NewSlidingWindow(c redis.Scripter, lim ratelimit.Limit, o Options) (*Limiter, error) {
	if lim.Burst != lim.Rate {
		return nil, fmt.Errorf("%w: a sliding window has no separate burst; got burst %d for rate %d", ratelimit.ErrInvalidLimit, lim.Burst, lim.Rate)
	}
	if lim.Rate > 0 && ceilMicros(lim.Period) > maxExact/int64(lim.Rate) {
		return nil, fmt.Errorf("%w: rate %d × period %v is too large for exact arithmetic in Redis", ratelimit.ErrInvalidLimit, lim.Rate, lim.Period)
	}
	return newLimiter(c, lim, o, "window", windowScript, lim.Period, lim.Rate)
}

// Limit returns the limit l enforces.
func (l *Limiter) Limit() ratelimit.Limit { return l.lim }

func (l *Limiter) key(k string) string { return l.prefix + "{" + k + "}" }

// AllowN reports whether key may spend n units now, and spends them if so,
// in one round trip. It returns the errors of [ratelimit.Limiter], and
// Redis errors wrapped with %w (context errors among them).
func (l *Limiter) AllowN(ctx context.Context, key string, n int) (ratelimit.Result, error) {
	if err := ratelimit.CheckCall(ctx, l.lim, key, n); err != nil {
		return ratelimit.Result{}, err
	}
	return l.run(ctx, key, n, "")
}

func (l *Limiter) run(ctx context.Context, key string, n int, holder string) (ratelimit.Result, error) {
	keys := []string{l.key(key)}
	var args []any
	switch {
	case l.script == gcraScript:
		inc := l.arg2
		if n != 1 {
			inc = int64(n) * l.interval
		}
		args = []any{l.arg1, inc}
	case holder == "" && l.script != concScript:
		args = []any{l.arg1, l.arg2, n}
	default:
		args = []any{l.arg1, l.arg2, n, holder}
	}
	var (
		reply any
		err   error
	)
	if l.batch != nil {
		reply, err = l.batch.do(ctx, keys, args)
	} else {
		reply, err = l.script.Run(ctx, l.c, keys, args...).Result()
	}
	if err != nil {
		return ratelimit.Result{}, fmt.Errorf("redisrate: %w", err)
	}
	if l.script == gcraScript {
		return l.gcraResult(reply, n)
	}
	return l.result(reply)
}

// gcraResult reads the reply of gcraScript for a call of n units: TAT − now
// in µs after an admission (above 0), −(TAT − now) after a denial (below
// 0). The other fields follow from the limit: what is left of tau in whole
// intervals, and for a denial the wait until TAT + n × interval − tau.
func (l *Limiter) gcraResult(reply any, n int) (ratelimit.Result, error) {
	v, ok := reply.(int64)
	if !ok || v == 0 {
		return ratelimit.Result{}, fmt.Errorf("redisrate: GCRA script returned %v, want a non-zero integer", reply)
	}
	res := ratelimit.Result{Limit: l.lim}
	if v > 0 {
		res.Allowed = true
		res.Remaining = int((l.tau - v) / l.interval)
		res.ResetAfter = time.Duration(v) * time.Microsecond
		return res, nil
	}
	ahead := -v
	res.Remaining = int((l.tau - ahead) / l.interval)
	res.RetryAfter = time.Duration(ahead+int64(n)*l.interval-l.tau) * time.Microsecond
	res.ResetAfter = time.Duration(ahead) * time.Microsecond
	return res, nil
}

// result reads the reply of the other scripts: {allowed, remaining,
// retry_after_us, reset_after_us}.
func (l *Limiter) result(reply any) (ratelimit.Result, error) {
	vals, ok := reply.([]any)
	if !ok || len(vals) != 4 {
		return ratelimit.Result{}, fmt.Errorf("redisrate: script returned %v, want 4 integers", reply)
	}
	var v [4]int64
	for i, x := range vals {
		if v[i], ok = x.(int64); !ok {
			return ratelimit.Result{}, fmt.Errorf("redisrate: script returned %v, want 4 integers", reply)
		}
	}
	return ratelimit.Result{
		Allowed:    v[0] == 1,
		Limit:      l.lim,
		Remaining:  int(v[1]),
		RetryAfter: time.Duration(v[2]) * time.Microsecond,
		ResetAfter: time.Duration(v[3]) * time.Microsecond,
	}, nil
}

// Wait blocks until key may spend one unit and spends it, sleeping each
// denial's RetryAfter; see [ratelimit.Wait] for its errors.
func (l *Limiter) Wait(ctx context.Context, key string) error {
	_, err := ratelimit.Wait(ctx, l, key, 1)
	return err
}

// Concurrency is a Redis limiter of work in flight, shared by every
// instance: at most Max holders per key, each slot a lease that frees
// itself after Lease if its holder dies. It is a [Limiter] whose AllowN
// takes slots that only their lease frees.
type Concurrency struct {
	*Limiter
}

// NewConcurrency returns a Concurrency admitting max holders per key with
// leases of lease, or an error for a nil client, a max or lease that is
// not positive, a prefix with braces, or a bad Batch.
func NewConcurrency(c redis.Scripter, max int, lease time.Duration, o Options) (*Concurrency, error) {
	l, err := newLimiter(c, ratelimit.Limit{Rate: max, Period: lease, Burst: max}, o, "conc", concScript, lease, max)
	if err != nil {
		return nil, err
	}
	return &Concurrency{l}, nil
}

// Acquire takes one slot of key in one round trip and returns the func
// that gives it back (one more round trip; it uses a fresh, bounded
// context and reports its error). A holder is a random 128-bit name, so a
// late release never frees someone else's slot. When no slot is free,
// Acquire returns a no-op release, the denying Result and
// [ratelimit.ErrNotAcquired].
func (c *Concurrency) Acquire(ctx context.Context, key string) (release func() error, res ratelimit.Result, err error) {
	noop := func() error { return nil }
	if err := ratelimit.CheckCall(ctx, c.lim, key, 1); err != nil {
		return noop, ratelimit.Result{}, err
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails, as documented by crypto/rand
	holder := "h-" + hex.EncodeToString(b[:])
	res, err = c.run(ctx, key, 1, holder)
	if err != nil {
		return noop, res, err
	}
	if !res.Allowed {
		return noop, res, ratelimit.ErrNotAcquired
	}
	k := c.key(key)
	return func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if err := releaseScript.Run(ctx, c.c, []string{k}, holder).Err(); err != nil {
			return fmt.Errorf("redisrate: release %s: %w", strconv.Quote(key), err)
		}
		return nil
	}, res, nil
}

// releaseTimeout bounds a release's round trip.
const releaseTimeout = 5 * time.Second
