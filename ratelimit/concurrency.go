package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Concurrency is an in-memory keyed limiter of work in flight: at most Max
// holders per key at once. [Concurrency.Acquire] takes a slot and returns
// the function that gives it back. Every slot is also a lease: if its
// holder dies without releasing it, the slot frees itself Lease after it
// was taken, so a crashed caller cannot hold a key's capacity forever.
//
// As a [Limiter], AllowN takes n slots that are only freed by their lease
// running out, which makes Concurrency usable wherever a Limiter is (its
// Limit is Rate = Burst = Max, Period = Lease). RetryAfter of a denial is
// when enough leases run out; releases may free slots sooner.
//
// A Concurrency is safe for concurrent use. AllowN on a known key
// allocates nothing; Acquire allocates its release func.
type Concurrency struct {
	lim   Limit
	lease int64
	epoch time.Time
	t     *table[slotsState, *slotsState]
	next  atomic.Uint64 // holder ids; 0 is AllowN's anonymous slots
}

type slot struct {
	id  uint64 // 0 for AllowN's anonymous slots
	exp int64
}

// slotsState keeps the held slots in order of expiry (all leases are
// equally long, so that is the order they were taken in).
type slotsState struct {
	slots []slot
	quiet int64 // when the last lease runs out
}

func (s *slotsState) idle(now int64) bool { return s.quiet <= now }

func (s *slotsState) reset(int64) { s.slots, s.quiet = s.slots[:0], 0 }

func (s *slotsState) expire(now int64) {
	i := 0
	for i < len(s.slots) && s.slots[i].exp <= now {
		i++
	}
	if i > 0 {
		s.slots = append(s.slots[:0], s.slots[i:]...)
	}
}

var _ Limiter = (*Concurrency)(nil)

// NewConcurrency returns a Concurrency admitting max holders per key, each
// lease lasting lease, or an error if max or lease is not positive or o is
// invalid.
func NewConcurrency(max int, lease time.Duration, o Options) (*Concurrency, error) {
	lim := Limit{Rate: max, Period: lease, Burst: max}
	if err := lim.Validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: concurrency of %d with lease %v: %w", max, lease, err)
	}
	o, err := o.resolve()
	if err != nil {
		return nil, err
	}
	return &Concurrency{lim: lim, lease: int64(lease), epoch: time.Now(), t: newTable[slotsState](o, lease)}, nil
}

// Len returns the number of keys c currently holds state for.
func (c *Concurrency) Len() int { return c.t.len() }

// Limit returns Limit{Rate: max, Period: lease, Burst: max}.
func (c *Concurrency) Limit() Limit { return c.lim }

// AllowN takes n slots of key that are freed only when their lease runs
// out, if n are free. See [Limiter] for the errors.
func (c *Concurrency) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if err := CheckCall(ctx, c.lim, key, n); err != nil {
		return Result{}, err
	}
	return c.take(key, n, 0), nil
}

// ErrNotAcquired is returned by [Concurrency.Acquire] when the key has no
// free slot; the Result that comes with it says when one frees up.
var ErrNotAcquired = errors.New("ratelimit: no free slot")

// Acquire takes one slot of key and returns the func that gives it back.
// Calling release more than once, or after the lease ran out, is harmless:
// it never frees a slot someone else holds now. When no slot is free,
// Acquire returns a no-op release, the denying Result and
// [ErrNotAcquired]. Bad calls return the errors of AllowN.
func (c *Concurrency) Acquire(ctx context.Context, key string) (release func(), res Result, err error) {
	if err := CheckCall(ctx, c.lim, key, 1); err != nil {
		return func() {}, Result{}, err
	}
	id := c.next.Add(1)
	res = c.take(key, 1, id)
	if !res.Allowed {
		return func() {}, res, ErrNotAcquired
	}
	return func() { c.release(key, id) }, res, nil
}

func (c *Concurrency) take(key string, n int, id uint64) Result {
	sh, h := c.t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st, now := c.t.getAt(sh, h, key, c.epoch)
	st.expire(now)
	res := Result{Limit: c.lim}
	held := len(st.slots)
	if held+n > c.lim.Burst {
		res.Remaining = c.lim.Burst - held
		res.RetryAfter = time.Duration(st.slots[held+n-c.lim.Burst-1].exp - now)
		res.ResetAfter = time.Duration(st.quiet - now)
		return res
	}
	exp := now + c.lease
	for range n {
		st.slots = append(st.slots, slot{id: id, exp: exp})
	}
	st.quiet = exp
	res.Allowed = true
	res.Remaining = c.lim.Burst - len(st.slots)
	res.ResetAfter = time.Duration(c.lease)
	return res
}

func (c *Concurrency) release(key string, id uint64) {
	sh, h := c.t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := c.t.lookup(sh, h, key)
	if st == nil {
		return
	}
	for i, s := range st.slots {
		if s.id == id {
			st.slots = append(st.slots[:i], st.slots[i+1:]...)
			break
		}
	}
	if len(st.slots) == 0 {
		st.quiet = 0
	} else {
		st.quiet = st.slots[len(st.slots)-1].exp
	}
}
