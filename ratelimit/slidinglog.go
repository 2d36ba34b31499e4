package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// SlidingLog is an in-memory keyed limiter that keeps the time of every
// admitted unit in the last Period, so it is exact: in any span of Period
// (half-open, [t, t+Period)) it admits at most Rate units, and a unit
// admitted at t stops counting at exactly t+Period.
//
// The price is memory: each key holds a ring of Rate timestamps (8 bytes
// each), allocated when the key first appears and recycled with its node.
// For large rates prefer [SlidingWindow] or [GCRA]. A SlidingLog is safe for
// concurrent use; AllowN on a known key allocates nothing.
type SlidingLog struct {
	lim    Limit
	period int64
	epoch  time.Time
	t      *table[logState, *logState]
}

type logState struct {
	ring  []int64 // admission times, oldest at head
	head  int
	count int
	quiet int64 // when the newest admission leaves the window
}

func (s *logState) idle(now int64) bool { return s.quiet <= now }

func (s *logState) reset(int64) { s.head, s.count, s.quiet = 0, 0, 0 }

// at returns the i-th oldest admission time.
func (s *logState) at(i int) int64 { return s.ring[(s.head+i)%len(s.ring)] }

var _ Limiter = (*SlidingLog)(nil)

// NewSlidingLog returns a SlidingLog admitting lim.Rate units per
// lim.Period per key, or an error if lim or o is invalid. A window has no
// burst of its own, so lim.Burst must equal lim.Rate.
func NewSlidingLog(lim Limit, o Options) (*SlidingLog, error) {
	if err := validateWindow(lim); err != nil {
		return nil, err
	}
	o, err := o.resolve()
	if err != nil {
		return nil, err
	}
	return &SlidingLog{lim: lim, period: int64(lim.Period), epoch: time.Now(), t: newTable[logState](o, lim.Period)}, nil
}

func validateWindow(lim Limit) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	if lim.Burst != lim.Rate {
		return fmt.Errorf("%w: a sliding window admits Rate per Period and has no separate burst; got burst %d for rate %d", ErrInvalidLimit, lim.Burst, lim.Rate)
	}
	return nil
}

// Len returns the number of keys l currently holds state for.
func (l *SlidingLog) Len() int { return l.t.len() }

// Limit returns the limit l enforces.
func (l *SlidingLog) Limit() Limit { return l.lim }

// AllowN reports whether key may spend n units now, and records them if so.
// See [Limiter] for the errors.
func (l *SlidingLog) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if err := CheckCall(ctx, l.lim, key, n); err != nil {
		return Result{}, err
	}
	sh, h := l.t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, now := l.t.getAt(sh, h, key, l.epoch)
	if st.ring == nil {
		st.ring = make([]int64, l.lim.Rate)
	}
	for st.count > 0 && st.ring[st.head] <= now-l.period {
		st.head = (st.head + 1) % len(st.ring)
		st.count--
	}
	res := Result{Limit: l.lim}
	if st.count+n > l.lim.Rate {
		// The (count+n-Rate)-th oldest admission must leave the window.
		res.RetryAfter = time.Duration(st.at(st.count+n-l.lim.Rate-1) + l.period - now)
		res.ResetAfter = time.Duration(st.at(st.count-1) + l.period - now)
		res.Remaining = l.lim.Rate - st.count
		return res, nil
	}
	for range n {
		st.ring[(st.head+st.count)%len(st.ring)] = now
		st.count++
	}
	st.quiet = now + l.period
	res.Allowed = true
	res.Remaining = l.lim.Rate - st.count
	res.ResetAfter = time.Duration(l.period)
	return res, nil
}
