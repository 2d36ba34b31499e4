package fanout

import (
	"context"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// attempt is the outcome of one of First's functions.
type attempt[R any] struct {
	index   int
	value   R
	err     error
	started bool // false when Rate never let the function start
}

// First runs fns concurrently and returns the value of the first one to
// succeed; the context of the others is then cancelled, and First returns
// once they have returned. Functions that fail do not stop the race. When
// all fail, First returns their errors joined in the order they failed, each
// an *[ItemError] whose Index is the function's position in fns; a panic is
// a *[PanicError] failure like any other.
//
// Without [Hedge], up to [Limit] functions start at once and each failure
// starts the next. With Hedge(d), First is a hedged request: fns[0] starts
// alone, and the next starts when nothing has succeeded within d of the last
// start, or as soon as a running call fails, so replicas are called only
// when they are needed. [Rate] and [Timeout] apply to each function; with
// Rate, a launched function may wait for its token, and Hedge's delay counts
// from its launch.
//
// When ctx ends first, the functions not yet started never start and First
// returns ctx.Err() joined with any failures that came before. An empty
// fns, a nil ctx or nil function, or an invalid option ([FailFast] does not
// apply) is an error, and nothing is called.
//
// Cost: one goroutine per function started, at most Limit at once.
func First[R any](ctx context.Context, fns []func(context.Context) (R, error), opts ...Option) (R, error) {
	var zero R
	c, err := prepare(ctx, false, opFirst, opts)
	if err != nil {
		return zero, err
	}
	if len(fns) == 0 {
		return zero, errNoFuncs
	}
	for i, f := range fns {
		if f == nil {
			return zero, nilFuncAt(i)
		}
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	r := &race[R]{
		fns:     fns,
		timeout: c.timeout,
		limiter: c.limiter(),
		results: make(chan attempt[R], len(fns)),
	}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	defer r.wg.Wait() // runs after cancel: deferred calls run last-in first-out
	defer r.cancel(errStopped)
	return r.run(ctx, min(c.limit, len(fns)), c.hedge)
}

// race is the state of one First call. Only the calling goroutine touches
// its fields other than ctx, results and wg.
type race[R any] struct {
	fns     []func(context.Context) (R, error)
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
	limiter *rate.Limiter
	// results has room for every function, so a call that loses the race
	// never blocks on its send.
	results  chan attempt[R]
	wg       sync.WaitGroup
	launched int
}

func (r *race[R]) run(parent context.Context, limit int, hedge time.Duration) (R, error) {
	var (
		zero    R
		errs    []error
		running int
		timer   *time.Timer
		tick    <-chan time.Time
		done    = r.ctx.Done()
		ended   bool // start nothing more: the parent ended, or Rate ran out of time
		dropped bool // some call returned only the parent's cancellation
	)
	first := limit
	if hedge > 0 {
		first = 1
		if len(r.fns) > 1 {
			timer = time.NewTimer(hedge)
			defer timer.Stop()
			tick = timer.C
		}
	}
	for range first {
		r.launch()
		running++
	}
	for running > 0 {
		select {
		case a := <-r.results:
			running--
			if a.err == nil {
				return a.value, nil
			}
			switch {
			case r.ctx.Err() != nil && isCancellation(a.err):
				// Only the parent's end cancels r.ctx during the race; its
				// error, added below, stands for this echo of it.
				dropped = true
			case !a.started:
				// Rate cannot start anything before the deadline: later
				// starts would wait even longer, so stop starting.
				if !ended {
					errs = append(errs, a.err)
				}
				ended = true
			default:
				errs = append(errs, &ItemError{Index: a.index, Err: a.err})
			}
			if r.canLaunch(ended) {
				r.launch()
				running++
				if timer != nil {
					timer.Reset(hedge)
				}
			}
		case <-tick:
			if r.canLaunch(ended) && running < limit {
				r.launch()
				running++
			}
			if r.canLaunch(ended) {
				timer.Reset(hedge)
			}
		case <-done:
			ended, done = true, nil
		}
	}
	if err := parent.Err(); err != nil && (dropped || r.launched < len(r.fns)) {
		errs = append(errs, err)
	}
	return zero, join(errs)
}

// canLaunch reports whether another function may start: one is left, and
// neither the parent's end (which the select may not have seen yet) nor
// Rate has ended the race's starts.
func (r *race[R]) canLaunch(ended bool) bool {
	return !ended && r.launched < len(r.fns) && r.ctx.Err() == nil
}

// launch starts the next function in a goroutine of its own. The goroutine
// always sends exactly one attempt, even if the function panics or calls
// runtime.Goexit.
func (r *race[R]) launch() {
	i := r.launched
	r.launched++
	r.wg.Go(func() {
		a := attempt[R]{index: i}
		returned := false
		defer func() {
			if !returned {
				if v := recover(); v != nil {
					a.err = &PanicError{Value: v, Stack: debug.Stack()}
				} else {
					a.err = errGoexit
				}
			}
			r.results <- a
		}()
		if r.limiter != nil {
			if err := r.limiter.Wait(r.ctx); err != nil {
				a.err = errRateDeadline
				if cerr := r.ctx.Err(); cerr != nil {
					a.err = cerr
				}
				returned = true
				return
			}
		}
		a.started = true
		ctx, cancel := r.ctx, context.CancelFunc(nil)
		if r.timeout > 0 {
			ctx, cancel = context.WithTimeout(r.ctx, r.timeout)
			defer cancel()
		}
		a.value, a.err = r.fns[i](ctx)
		returned = true
	})
}
