package ratelimit

import (
	"context"
	"math/bits"
	"time"
)

// SlidingWindow is an in-memory keyed limiter using the sliding-window
// counter Cloudflare describes: each key keeps the count of its current
// fixed window and of the previous one, and estimates the count over the
// last Period by weighting the previous window by the part of it still
// inside the sliding window. It needs O(1) memory per key (four int64s)
// whatever the rate, at the cost of being approximate: it assumes the
// previous window's units were spread evenly. It never admits more than
// Rate units in one fixed window, nor more than 2×Rate in any Period.
//
// Each key's windows start at its first request. The arithmetic is exact
// integer arithmetic in nanoseconds (128-bit where needed); the previous
// window's weighted count is rounded up, and RetryAfter is the exact first
// instant at which the estimate admits the request. A SlidingWindow is safe
// for concurrent use; AllowN on a known key allocates nothing.
type SlidingWindow struct {
	lim    Limit
	period int64
	epoch  time.Time
	t      *table[windowState, *windowState]
}

type windowState struct {
	start      int64 // start of the current window
	prev, curr int64 // units admitted in the previous and current windows
	quiet      int64 // when both counts will have rolled out
	used       bool
}

func (s *windowState) idle(now int64) bool { return !s.used || s.quiet <= now }

func (s *windowState) reset(int64) { *s = windowState{} }

var _ Limiter = (*SlidingWindow)(nil)

// NewSlidingWindow returns a SlidingWindow admitting about lim.Rate units
// per lim.Period per key, or an error if lim or o is invalid. A window has
// no burst of its own, so lim.Burst must equal lim.Rate.
func NewSlidingWindow(lim Limit, o Options) (*SlidingWindow, error) {
	if err := validateWindow(lim); err != nil {
		return nil, err
	}
	o, err := o.resolve()
	if err != nil {
		return nil, err
	}
	return &SlidingWindow{lim: lim, period: int64(lim.Period), epoch: time.Now(), t: newTable[windowState](o, lim.Period)}, nil
}

// Len returns the number of keys w currently holds state for.
func (w *SlidingWindow) Len() int { return w.t.len() }

// Limit returns the limit w enforces.
func (w *SlidingWindow) Limit() Limit { return w.lim }

// AllowN reports whether key may spend n units now, and counts them if so.
// See [Limiter] for the errors.
func (w *SlidingWindow) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if err := CheckCall(ctx, w.lim, key, n); err != nil {
		return Result{}, err
	}
	sh, h := w.t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, now := w.t.getAt(sh, h, key, w.epoch)
	if !st.used {
		*st = windowState{start: now, used: true}
	}
	p := w.period
	if k := (now - st.start) / p; k > 0 {
		if k == 1 {
			st.prev = st.curr
		} else {
			st.prev = 0
		}
		st.curr = 0
		st.start += k * p
	}
	e := now - st.start // time into the current window, in [0, p)
	rate, cost := int64(w.lim.Rate), int64(n)
	weighted := mulDivCeil(st.prev, p-e, p)
	res := Result{Limit: w.lim}
	if st.curr+cost+weighted <= rate {
		st.curr += cost
		st.quiet = st.start + 2*p
		res.Allowed = true
		res.Remaining = int(rate - st.curr - weighted)
		res.ResetAfter = time.Duration(st.quiet - now)
		return res, nil
	}
	res.Remaining = int(max(rate-st.curr-weighted, 0))
	if st.curr+cost <= rate {
		// Admitted within this window once prev×(p−e′)/p ≤ rate−curr−cost.
		at := p - mulDivFloor(rate-st.curr-cost, p, st.prev)
		res.RetryAfter = time.Duration(at - e)
	} else {
		// Only in the next window, where curr becomes prev.
		at := p - mulDivFloor(rate-cost, p, st.curr)
		res.RetryAfter = time.Duration(p - e + at)
	}
	switch {
	case st.curr > 0:
		res.ResetAfter = time.Duration(2*p - e)
	case st.prev > 0:
		res.ResetAfter = time.Duration(p - e)
	}
	return res, nil
}

// mulDivFloor returns ⌊a×b/c⌋ for non-negative a, b and positive c. The
// product may exceed 64 bits; the callers ensure the quotient does not
// (each quotient is below Period or below Rate).
func mulDivFloor(a, b, c int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, _ := bits.Div64(hi, lo, uint64(c))
	return int64(q)
}

// mulDivCeil returns ⌈a×b/c⌉ under the same conditions as mulDivFloor.
func mulDivCeil(a, b, c int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	q, r := bits.Div64(hi, lo, uint64(c))
	if r != 0 {
		q++
	}
	return int64(q)
}
