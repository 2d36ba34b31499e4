package ratelimit

import (
	"context"
	"time"
)

// GCRA is an in-memory keyed limiter implementing the generic cell rate
// algorithm: each key keeps one number, its theoretical arrival time (TAT),
// the moment its bucket would be empty again. A request of cost n is
// admitted if TAT + n×interval − burst×interval is not in the future, and
// then moves TAT forward by n×interval.
//
// Under continuous demand from an empty start it admits exactly
// Burst + ⌊elapsed / Interval⌋ unit requests, where Interval is Period/Rate
// rounded up to the nanosecond ([Limit.Interval]).
//
// A GCRA is safe for concurrent use. AllowN on a known key allocates nothing.
type GCRA struct {
	lim      Limit
	interval int64
	tau      int64 // burst × interval: how far TAT may run ahead of now
	epoch    time.Time
	t        *table[gcraState, *gcraState]
}

type gcraState struct{ tat int64 }

// idle: a TAT in the past says no more than a fresh key does.
func (s *gcraState) idle(now int64) bool { return s.tat <= now }

func (s *gcraState) reset(int64) { s.tat = 0 }

var _ Limiter = (*GCRA)(nil)

// NewGCRA returns a GCRA enforcing lim per key, or an error if lim or o is
// invalid.
func NewGCRA(lim Limit, o Options) (*GCRA, error) {
	if err := lim.Validate(); err != nil {
		return nil, err
	}
	o, err := o.resolve()
	if err != nil {
		return nil, err
	}
	iv := int64(lim.Interval())
	return &GCRA{
		lim:      lim,
		interval: iv,
		tau:      iv * int64(lim.Burst),
		epoch:    time.Now(),
		t:        newTable[gcraState](o, lim.Period),
	}, nil
}

// Limit returns the limit g enforces.
func (g *GCRA) Limit() Limit { return g.lim }

// Len returns the number of keys g currently holds state for.
func (g *GCRA) Len() int { return g.t.len() }

// AllowN reports whether key may spend n now, and spends it if so. See
// [Limiter] for the errors.
func (g *GCRA) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if err := CheckCall(ctx, g.lim, key, n); err != nil {
		return Result{}, err
	}
	now := int64(time.Since(g.epoch))
	sh, h := g.t.shard(key)
	sh.mu.Lock()
	st := g.t.get(sh, h, key, now)
	tat := max(st.tat, now)
	newTAT := tat + int64(n)*g.interval
	allowAt := newTAT - g.tau
	if now < allowAt {
		sh.mu.Unlock()
		return Result{
			Limit:      g.lim,
			Remaining:  int((g.tau - (tat - now)) / g.interval),
			RetryAfter: time.Duration(allowAt - now),
			ResetAfter: time.Duration(tat - now),
		}, nil
	}
	st.tat = newTAT
	sh.mu.Unlock()
	return Result{
		Allowed:    true,
		Limit:      g.lim,
		Remaining:  int((g.tau - (newTAT - now)) / g.interval),
		ResetAfter: time.Duration(newTAT - now),
	}, nil
}
