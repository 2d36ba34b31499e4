package ratelimit

import (
	"context"
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// TokenBucket is an in-memory keyed limiter holding one x/time/rate.Limiter
// per key: a bucket of Burst tokens refilled at Rate per Period. Besides
// AllowN it offers what x/time/rate is good at: [TokenBucket.Wait], which
// queues fairly by reserving a future token, and [TokenBucket.Reserve].
//
// RetryAfter and ResetAfter are computed from the bucket's token count and
// rounded up to the nanosecond. AllowN on a known key allocates nothing; a
// new key allocates its rate.Limiter. A TokenBucket is safe for concurrent
// use.
type TokenBucket struct {
	lim   Limit
	every rate.Limit // tokens per second
	tau   int64      // ns to refill an empty bucket
	epoch time.Time
	t     *table[tokenState, *tokenState]
}

type tokenState struct {
	l    *rate.Limiter
	full int64 // when it is full again at the latest, since the last draw
}

func (s *tokenState) idle(now int64) bool { return s.l == nil || s.full <= now }

// reset keeps the limiter only if it has refilled: a bucket evicted before
// it refilled must not be handed, part-empty, to another key.
func (s *tokenState) reset(now int64) {
	if s.full > now {
		*s = tokenState{}
	}
}

var _ Limiter = (*TokenBucket)(nil)

// NewTokenBucket returns a TokenBucket enforcing lim per key, or an error if
// lim or o is invalid.
func NewTokenBucket(lim Limit, o Options) (*TokenBucket, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	o, err := o.resolve()
	if err != nil {
		return nil, err
	}
	return &TokenBucket{
		lim:   lim,
		every: rate.Limit(float64(lim.Rate) / lim.Period.Seconds()),
		tau:   int64(lim.Interval()) * int64(lim.Burst),
		epoch: time.Now(),
		t:     newTable[tokenState](o, lim.Period),
	}, nil
}

// Len returns the number of keys b currently holds state for.
func (b *TokenBucket) Len() int { return b.t.len() }

// Limit returns the limit b enforces.
func (b *TokenBucket) Limit() Limit { return b.lim }

// bucket locks key's shard and returns key's limiter, creating it full if
// needed, and the time now, noting a draw at now. The caller unlocks the
// shard, so that what it reads from the limiter is consistent with what
// it did to it. now is the epoch plus the monotonic time since, read as
// probeAt reads it; x/time/rate only subtracts and compares times, which
// use the monotonic reading.
func (b *TokenBucket) bucket(key string) (*shard[tokenState], *rate.Limiter, time.Time) {
	sh, h := b.t.shard(key)
	sh.mu.Lock()
	st, ns := b.t.getAt(sh, h, key, b.epoch)
	if st.l == nil {
		st.l = rate.NewLimiter(b.every, b.lim.Burst)
	}
	st.full = ns + b.tau
	return sh, st.l, b.epoch.Add(time.Duration(ns))
}

// AllowN reports whether key may spend n tokens now, and spends them if so.
// See [Limiter] for the errors.
func (b *TokenBucket) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if err := CheckCall(ctx, b.lim, key, n); err != nil {
		return Result{}, err
	}
	sh, l, now := b.bucket(key)
	ok := l.AllowN(now, n)
	tokens := l.TokensAt(now)
	sh.mu.Unlock()
	res := Result{
		Allowed:    ok,
		Limit:      b.lim,
		Remaining:  max(int(math.Floor(tokens)), 0), // float error can dip below 0
		ResetAfter: b.tokensDuration(float64(b.lim.Burst) - tokens),
	}
	if !ok {
		res.RetryAfter = b.retryAfter(l, now, n, tokens)
	}
	return res, nil
}

// retryAfter returns the exact wait after which l admits n, in
// x/time/rate's own float arithmetic: it truncates the wait it computes to
// the nanosecond, so it admits up to a nanosecond before the exact real
// number. The estimate is nudged until it is the first such nanosecond.
// l's shard must be locked.
func (b *TokenBucket) retryAfter(l *rate.Limiter, now time.Time, n int, tokens float64) time.Duration {
	admits := func(w time.Duration) bool {
		need := float64(n) - l.TokensAt(now.Add(w))
		return need <= 0 || time.Duration(need/float64(b.every)*float64(time.Second)) <= 0
	}
	w := max(b.tokensDuration(float64(n)-tokens), 1)
	for i := 0; i < 4 && w > 1 && admits(w-1); i++ {
		w--
	}
	for i := 0; i < 4 && !admits(w); i++ {
		w++
	}
	return w
}

// tokensDuration is how long the bucket takes to gain tokens, rounded up.
func (b *TokenBucket) tokensDuration(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(tokens / float64(b.every) * 1e9))
}

// Wait blocks until key may spend one token, and spends it. It is WaitN
// with n = 1.
func (b *TokenBucket) Wait(ctx context.Context, key string) error {
	return b.WaitN(ctx, key, 1)
}

// WaitN blocks until key may spend n tokens and spends them, queueing
// fairly behind earlier waiters (it reserves its tokens first, then sleeps).
// It returns the errors of AllowN for bad calls, ctx's error if ctx ends
// first (the reservation is then given back), and an error wrapping
// [ErrWouldExceedDeadline] at once if ctx's deadline is too soon.
func (b *TokenBucket) WaitN(ctx context.Context, key string, n int) error {
	if err := CheckCall(ctx, b.lim, key, n); err != nil {
		return err
	}
	sh, l, now := b.bucket(key)
	r := l.ReserveN(now, n)
	sh.mu.Unlock()
	delay := r.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && dl.Sub(now) < delay {
		r.CancelAt(now)
		return fmt.Errorf("%w: would wait %v", ErrWouldExceedDeadline, delay)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ctx.Err()
	}
}

// Reserve reserves n tokens of key's bucket and returns the
// x/time/rate.Reservation saying when they may be used; the caller must
// wait its Delay or Cancel it. Reserve returns the errors of AllowN for bad
// calls.
func (b *TokenBucket) Reserve(ctx context.Context, key string, n int) (*rate.Reservation, error) {
	if err := CheckCall(ctx, b.lim, key, n); err != nil {
		return nil, err
	}
	sh, l, now := b.bucket(key)
	defer sh.mu.Unlock()
	return l.ReserveN(now, n), nil
}
