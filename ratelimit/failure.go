package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// FailurePolicy says what a [Guarded] limiter answers while its store (say
// Redis) is failing: [FailOpen], [FailClosed] or [Fallback]. The zero
// FailurePolicy is FailOpen.
type FailurePolicy struct {
	kind     Outcome
	local    Limiter
	replicas int
}

var (
	// FailOpen admits every request while the store fails. It is the
	// default, because a limiter protects a service from overload and abuse,
	// and an outage of the limiter's store should degrade that protection,
	// not take the whole service down with it. Choose Fallback to keep
	// approximate limits, or FailClosed where admitting unchecked requests
	// is worse than refusing them (say, paid API quotas or login attempts).
	FailOpen = FailurePolicy{kind: FailedOpen}
	// FailClosed denies every request while the store fails, with a
	// RetryAfter of when the store will be tried again, and never less
	// than FailureOptions.Timeout.
	FailClosed = FailurePolicy{kind: FailedClosed}
)

// Fallback decides with local, an in-memory limiter, while the store fails.
// local should enforce the same, whole limit as the store does; with
// replicas > 1 instances sharing that limit, each request costs replicas
// units locally, so that each instance admits about 1/replicas of the limit
// and together they stay near it. Results then report Remaining divided by
// replicas, and a request whose n × replicas exceeds local's burst is
// denied, as by FailClosed, since this instance's share can never hold it.
// [WithFailurePolicy] rejects a nil local, replicas < 1, and a local whose
// burst is below replicas.
func Fallback(local Limiter, replicas int) FailurePolicy {
	return FailurePolicy{kind: FellBack, local: local, replicas: replicas}
}

// Outcome says how a [Guarded] limiter reached a decision.
type Outcome int

// The outcomes, as reported to [FailureOptions].Observe.
const (
	// Decided: the store decided.
	Decided Outcome = iota
	// FailedOpen: the store failed or the breaker was open; admitted.
	FailedOpen
	// FailedClosed: the store failed or the breaker was open; denied.
	FailedClosed
	// FellBack: the store failed or the breaker was open; the local
	// limiter decided.
	FellBack
)

// String names the outcome, as in "fell back".
func (o Outcome) String() string {
	switch o {
	case Decided:
		return "decided"
	case FailedOpen:
		return "failed open"
	case FailedClosed:
		return "failed closed"
	case FellBack:
		return "fell back"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// Event is one decision of a [Guarded] limiter, for metrics.
type Event struct {
	Key     string
	Outcome Outcome
	Result  Result
	// Err is the store's error when this call tried the store and it
	// failed; nil when the store decided or was not tried (breaker open).
	Err error
	// BreakerOpen reports whether the breaker is open after this call.
	BreakerOpen bool
}

// FailureOptions tunes a [Guarded] limiter. The zero value is ready to use.
type FailureOptions struct {
	// Timeout bounds each call to the store, through its ctx; a slower call
	// counts as a failure and the policy answers instead. The store must
	// honour ctx deadlines: for go-redis, set Options.ContextTimeoutEnabled,
	// or a slow Redis holds each call for the client's ReadTimeout.
	// Defaults to 100ms.
	Timeout time.Duration
	// Failures is how many failures in a row open the circuit breaker.
	// While it is open the store is not called at all and the policy
	// answers at once. Defaults to 5.
	Failures int
	// OpenFor is how long the breaker stays open before one call is let
	// through to probe the store; success closes the breaker, failure
	// (the timeout included) opens it for another OpenFor from the moment
	// the probe failed. While the probe is out every other call gets the
	// policy's answer at once. A probe whose caller's ctx ends tells
	// nothing about the store: the breaker stays open and the next call
	// probes. Defaults to 1s.
	OpenFor time.Duration
	// Observe, if set, is called after every decision; it must be quick and
	// safe for concurrent use.
	Observe func(Event)
}

// Guarded wraps a limiter whose store can fail (see [WithFailurePolicy]).
type Guarded struct {
	store   Limiter
	lim     Limit
	policy  FailurePolicy
	timeout time.Duration
	limit   int
	openFor time.Duration
	observe func(Event)

	mu        sync.Mutex
	failures  int
	openUntil time.Time // zero: closed
	probing   bool
}

var _ Limiter = (*Guarded)(nil)

// WithFailurePolicy returns store wrapped so that a failing or slow store
// answers by p instead of with an error: each call has a timeout, and a
// circuit breaker stops calling a store that keeps failing and probes it
// again later. Bad calls (n < 1, n > Burst, an empty key) and the caller's
// own cancelled ctx are still errors, not failures.
//
// store must report its Limit with a Limit() method, as every limiter in
// asynckit does. WithFailurePolicy returns an error for a nil store, one
// without Limit(), a negative option, or an invalid Fallback.
func WithFailurePolicy(store Limiter, p FailurePolicy, o FailureOptions) (*Guarded, error) {
	if store == nil {
		return nil, errors.New("ratelimit: WithFailurePolicy: nil limiter")
	}
	ll, ok := store.(limited)
	if !ok {
		return nil, fmt.Errorf("ratelimit: WithFailurePolicy: %T has no Limit() method", store)
	}
	if o.Timeout < 0 || o.Failures < 0 || o.OpenFor < 0 {
		return nil, errors.New("ratelimit: WithFailurePolicy: Timeout, Failures and OpenFor must not be negative")
	}
	lim := ll.Limit()
	if p.kind == FellBack {
		if p.local == nil {
			return nil, errors.New("ratelimit: Fallback: nil local limiter")
		}
		if p.replicas < 1 {
			return nil, fmt.Errorf("ratelimit: Fallback: replicas %d must be at least 1", p.replicas)
		}
		if lp, ok := p.local.(limited); ok && lp.Limit().Burst < p.replicas {
			return nil, fmt.Errorf("ratelimit: Fallback: local burst %d is below replicas %d", lp.Limit().Burst, p.replicas)
		}
	}
	g := &Guarded{
		store: store, lim: lim, policy: p, observe: o.Observe,
		timeout: orDefault(o.Timeout, 100*time.Millisecond),
		limit:   orDefault(o.Failures, 5),
		openFor: orDefault(o.OpenFor, time.Second),
	}
	return g, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Limit returns the store's limit.
func (g *Guarded) Limit() Limit { return g.lim }

// AllowN asks the store, within the timeout, unless the breaker is open;
// when the store fails or is not asked, the policy answers. It returns an
// error only for bad calls and for ctx ending, and, with Fallback, for the
// local limiter's errors.
func (g *Guarded) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if err := CheckCall(ctx, g.lim, key, n); err != nil {
		return Result{}, err
	}
	ok, probe := g.mayCall()
	if !ok {
		return g.fail(ctx, key, n, nil)
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	res, err := g.store.AllowN(cctx, key, n)
	cancel()
	if err == nil {
		g.succeeded()
		g.emit(Event{Key: key, Outcome: Decided, Result: res})
		return res, nil
	}
	if ctx.Err() != nil {
		g.abandoned(probe)
		return Result{}, ctx.Err() // the caller gave up; the store did not fail
	}
	if errors.Is(err, ErrInvalidCost) || errors.Is(err, ErrCostExceedsBurst) || errors.Is(err, ErrEmptyKey) {
		g.abandoned(probe)
		return Result{}, err
	}
	g.failed(probe)
	return g.fail(ctx, key, n, err)
}

// mayCall reports whether the store may be called now: the breaker is
// closed, or its open time is over and no other probe is in flight, in
// which case this call is the probe.
func (g *Guarded) mayCall() (ok, probe bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.openUntil.IsZero() {
		return true, false
	}
	if g.probing || time.Now().Before(g.openUntil) {
		return false, false
	}
	g.probing = true
	return true, true
}

func (g *Guarded) succeeded() {
	g.mu.Lock()
	g.failures, g.openUntil, g.probing = 0, time.Time{}, false
	g.mu.Unlock()
}

// abandoned ends a call that told nothing about the store.
func (g *Guarded) abandoned(probe bool) {
	if probe {
		g.mu.Lock()
		g.probing = false
		g.mu.Unlock()
	}
}

// failed counts a failure; the threshold, or a failed probe, opens the
// breaker (again).
func (g *Guarded) failed(probe bool) {
	g.mu.Lock()
	g.failures++
	if probe || g.failures >= g.limit {
		g.openUntil = time.Now().Add(g.openFor)
	}
	if probe {
		g.probing = false
	}
	g.mu.Unlock()
}

func (g *Guarded) breakerOpen() (bool, time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.openUntil.IsZero() {
		return false, 0
	}
	return true, time.Until(g.openUntil)
}

// fail answers by the policy; storeErr is the store's error, if it was
// asked.
func (g *Guarded) fail(ctx context.Context, key string, n int, storeErr error) (Result, error) {
	open, wait := g.breakerOpen()
	ev := Event{Key: key, Outcome: g.policy.kind, Err: storeErr, BreakerOpen: open}
	switch g.policy.kind {
	case FailedClosed:
		ev.Result = Result{Limit: g.lim, RetryAfter: max(wait, g.timeout), ResetAfter: max(wait, g.timeout)}
	case FellBack:
		res, err := g.policy.local.AllowN(ctx, key, n*g.policy.replicas)
		switch {
		case errors.Is(err, ErrCostExceedsBurst):
			// n is within the store's burst, but this instance's share
			// of the limit can never admit that much at once: deny, as
			// FailClosed would, rather than fail a valid call.
			ev.Result = Result{Limit: g.lim, RetryAfter: max(wait, g.timeout), ResetAfter: max(wait, g.timeout)}
		case err != nil:
			return Result{}, fmt.Errorf("ratelimit: fallback limiter: %w", err)
		default:
			res.Limit = g.lim
			res.Remaining /= g.policy.replicas
			ev.Result = res
		}
	default:
		ev.Outcome = FailedOpen
		ev.Result = Result{Allowed: true, Limit: g.lim, Remaining: g.lim.Burst - n}
	}
	g.emit(ev)
	return ev.Result, nil
}

func (g *Guarded) emit(ev Event) {
	if g.observe != nil {
		g.observe(ev)
	}
}
