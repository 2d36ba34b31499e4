package fanout

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// mode is what a batch does with each call's outcome.
type mode uint8

const (
	modeMap    mode = iota // values into out, failures into errs
	modeSettle             // every outcome into res
	modeStream             // every outcome sent on sink
)

// item is one outcome travelling from a Stream worker to the loop.
type item[R any] struct {
	index  int
	result Result[R]
}

// batch runs fn over items with a fixed set of workers, each pulling the
// next index from an atomic counter and writing the outcome straight into a
// preallocated slice. The hot path (no Timeout, no Rate) allocates nothing
// per item and takes no lock: a claim, an atomic look at whether the run's
// context has ended, the call, a store. Locks are taken only on failure.
type batch[T, R any] struct {
	// next is the next index to claim. It is the one word every worker
	// writes, so it sits on a cache line of its own.
	_    [64]byte
	next atomic.Int64
	_    [56]byte

	mode     mode
	workers  int32 // how many workers run the batch (packed beside mode)
	items    []T
	fn       func(context.Context, T) (R, error)
	parent   context.Context
	ctx      context.Context // parent plus the run's own cancellation
	cancel   context.CancelCauseFunc
	timeout  time.Duration
	limiter  *rate.Limiter
	failFast bool

	out  []R             // modeMap
	res  []Result[R]     // modeSettle
	sink chan<- item[R]  // modeStream
	quit <-chan struct{} // modeStream: closed when the loop has stopped reading

	wg sync.WaitGroup

	mu      sync.Mutex
	errs    []error // modeMap: failures in the order they were recorded
	stopped bool    // modeMap: the run was stopped, and the reason recorded
}

// errStopped is the cancellation cause of a run stopped by the fan-out
// itself (a failure under FailFast, or the end of the call).
var errStopped = errors.New("fanout: run stopped")

func newBatch[T, R any](ctx context.Context, m mode, items []T, fn func(context.Context, T) (R, error), c *config) *batch[T, R] {
	b := &batch[T, R]{
		mode:     m,
		items:    items,
		fn:       fn,
		parent:   ctx,
		timeout:  c.timeout,
		limiter:  c.limiter(),
		failFast: c.failFast,
	}
	b.ctx, b.cancel = context.WithCancelCause(ctx)
	return b
}

// workers is how many goroutines run the batch: the limit, but never more
// than there are items.
func workers(c *config, n int) int { return min(c.limit, n) }

// run starts w workers and waits for all of them, then cancels the run's
// context so that nothing derived from it outlives the call.
func (b *batch[T, R]) run(w int) {
	b.start(w)
	b.wg.Wait()
	b.cancel(errStopped)
}

// start starts w workers.
func (b *batch[T, R]) start(w int) {
	b.workers = int32(w)
	b.wg.Add(w)
	for range w {
		go b.worker()
	}
}

// worker is one worker goroutine.
func (b *batch[T, R]) worker() {
	defer b.wg.Done()
	var s span
	b.work(&s)
}

// span is a worker's claim on the items: it runs [lo, hi) itself, in
// order, and claims size items at its next claim. It lives in the worker's
// frame, outside loop's, so that loop can resume it after a recovered
// panic; after runtime.Goexit a copy goes to the replacement goroutine.
type span struct {
	lo, hi, size int
}

// Claims on the fast paths adapt to the calls' duration. A worker claims
// one item at first, and doubles its claim (up to maxClaim) while a whole
// claim runs within claimTarget; once a claim takes longer, it claims one
// item again. Calls that wait on I/O thus keep single-item claims, so an
// idle worker always takes the next item, while calls that take
// nanoseconds pay for the shared counter (a cache line both cores fight
// over) and for a clock reading once per claim instead of once per item, and
// neighbouring results are written by one core rather than two.
//
// A claim never exceeds 1/(8×workers) of the items left, so the last items
// are spread over every worker, and a small input (under 16 items per
// worker) is always claimed one item at a time. The cost of a claim is
// that a worker runs it in order: when fast calls turn slow in the middle
// of a claim, the rest of that claim waits for this worker.
const (
	maxClaim    = 256
	claimTarget = 5 * time.Microsecond
	claimShare  = 8 // a claim takes at most 1/(claimShare×workers) of the items left
)

// work runs the claim loop until the items run out or the run stops. A
// panicking call is recovered inside loop, which then returns false and is
// entered again with the rest of its span, so a worker pays for one
// deferred recover per panic, not per item.
func (b *batch[T, R]) work(s *span) {
	for !b.loop(s) {
	}
}

// nextClaim returns the size of the claim that follows one of size items
// which took d, when left items are still unclaimed. left is read from the
// shared counter just before the claim, not derived from this worker's last
// claim, which other workers may have left far behind.
func (b *batch[T, R]) nextClaim(size int, d time.Duration, left int) int {
	if d > claimTarget {
		return 1
	}
	size = min(2*size, maxClaim, left/(claimShare*int(b.workers)))
	return max(size, 1)
}

// loop claims and runs items. It returns true when this worker is done, and
// false after recovering a panic, so that work resumes the loop.
func (b *batch[T, R]) loop(s *span) (finished bool) {
	i := -1
	lo, hi, size := s.lo, s.hi, max(s.size, 1)
	defer func() {
		if finished {
			return
		}
		// The rest of the span is still this worker's to run.
		s.lo, s.hi, s.size = lo, hi, size
		if v := recover(); v != nil {
			b.record(i, Result[R]{Err: &PanicError{Value: v, Stack: debug.Stack()}})
			return
		}
		// runtime.Goexit cannot be stopped: this goroutine ends here. Report
		// the item and hand the rest of the work to a replacement, so the
		// worker count and every item's outcome are kept.
		b.record(i, Result[R]{Err: errGoexit})
		rest := *s
		b.wg.Go(func() { b.work(&rest) })
	}()
	n := int64(len(b.items))
	if b.timeout == 0 && b.limiter == nil {
		// The hot paths, with the fields the loop reads held in locals.
		// The Map and Settle loops below share their claim logic line for
		// line on purpose: folding them into one loop with a mode branch or
		// a store callback per item cost measurably per item, and these
		// loops are what BenchmarkMap and BenchmarkSettle measure. A change
		// to one claim loop belongs in the other.
		ctx, items, fn := b.ctx, b.items, b.fn
		// Claims are timed on the monotonic clock alone: time.Since reads
		// it once, where time.Now reads the wall clock too. A run too small
		// for any claim to grow past one item (a handful of calls in a
		// request handler) reads no clock at all.
		adaptive := n >= 2*claimShare*int64(b.workers)
		var base time.Time
		var t0 time.Duration // when the current claim started, since base
		timed := lo < hi     // whether a claim is running, so t0 is set
		if adaptive {
			base = time.Now()
			t0 = time.Since(base)
		}
		switch b.mode {
		case modeMap:
			out := b.out
			for {
				if lo == hi {
					var now time.Duration
					if adaptive {
						now = time.Since(base)
						if timed {
							size = b.nextClaim(size, now-t0, int(n-b.next.Load()))
						}
					}
					k := b.next.Add(int64(size)) - int64(size)
					if k >= n {
						return true
					}
					lo, hi = int(k), int(min(k+int64(size), n))
					t0, timed = now, true
				}
				i = lo
				lo++
				if ctx.Err() != nil {
					b.stop(b.stopReason())
					return true
				}
				v, err := fn(ctx, items[i])
				if err != nil {
					b.fail(i, err)
					continue
				}
				out[i] = v
			}
		case modeSettle:
			res := b.res
			for {
				if lo == hi {
					var now time.Duration
					if adaptive {
						now = time.Since(base)
						if timed {
							size = b.nextClaim(size, now-t0, int(n-b.next.Load()))
						}
					}
					k := b.next.Add(int64(size)) - int64(size)
					if k >= n {
						return true
					}
					lo, hi = int(k), int(min(k+int64(size), n))
					t0, timed = now, true
				}
				i = lo
				lo++
				r := &res[i]
				if ctx.Err() != nil {
					r.Err = b.stopReason()
					continue
				}
				v, err := fn(ctx, items[i])
				// res starts zeroed: leaving a nil Err unwritten spares the
				// GC write barrier on the common path.
				r.Value = v
				if err != nil {
					r.Err = err
				}
			}
		}
	}
	// Timeout, Rate and Stream: calls that wait on timers, tokens or the
	// loop's reader, so one item per claim. Only a span left by a panic on
	// the fast path can be longer; it is finished first.
	for {
		if lo == hi {
			k := b.next.Add(1) - 1
			if k >= n {
				return true
			}
			lo, hi = int(k), int(k)+1
		}
		i = lo
		lo++
		if err := b.admit(); err != nil {
			if !b.skip(i, err) {
				return true
			}
			continue
		}
		ctx, cancel := b.ctx, context.CancelFunc(nil)
		if b.timeout > 0 {
			ctx, cancel = context.WithTimeout(b.ctx, b.timeout)
		}
		v, err := b.fn(ctx, b.items[i])
		if cancel != nil {
			cancel()
		}
		if b.mode == modeMap {
			if err != nil {
				b.fail(i, err)
				continue
			}
			b.out[i] = v
			continue
		}
		if !b.record(i, Result[R]{Value: v, Err: err}) {
			return true
		}
	}
}

// admit reports whether a claimed item may start: nil when it may, or the
// error its result should carry when it never will.
func (b *batch[T, R]) admit() error {
	// Err is an atomic load on the run's cancelCtx, cheaper than polling
	// the done channel, and exact: cancel sets it before it returns.
	if b.ctx.Err() != nil {
		return b.stopReason()
	}
	if b.limiter == nil {
		return nil
	}
	if err := b.limiter.Wait(b.ctx); err != nil {
		if b.ctx.Err() != nil {
			return b.stopReason()
		}
		return errRateDeadline
	}
	return nil
}

// stopReason is the error of items that never start because the run's
// context ended. Only the parent or the fan-out itself ends it; in the
// second case the reason is already recorded, and the parent's error is
// returned for uniformity.
func (b *batch[T, R]) stopReason() error {
	if err := b.parent.Err(); err != nil {
		return err
	}
	return context.Cause(b.ctx)
}

// skip handles an item that will not start, for reason. It reports whether
// the worker should go on claiming: Settle and Stream report every item, so
// they go on (each skipped item is cheap); Map stops the run.
func (b *batch[T, R]) skip(i int, reason error) bool {
	if b.mode != modeMap {
		return b.record(i, Result[R]{Err: reason})
	}
	b.stop(reason)
	return false
}

// stop records reason as the run's error unless the run was already
// stopped, and cancels the run.
func (b *batch[T, R]) stop(reason error) {
	b.mu.Lock()
	first := !b.stopped
	if first {
		b.stopped = true
		b.errs = append(b.errs, reason)
	}
	b.mu.Unlock()
	if first {
		b.cancel(errStopped)
	}
}

// fail records the error of item i in Map mode. An error that only reports
// the run's own cancellation (context.Canceled or DeadlineExceeded after the
// run's context ended) is not a failure of its own: it is dropped, and the
// run's stop reason stands for it.
func (b *batch[T, R]) fail(i int, err error) {
	ended := b.ctx.Err() != nil
	if ended && isCancellation(err) {
		b.stop(b.stopReason())
		return
	}
	b.mu.Lock()
	if ended && !b.stopped {
		// The run's context ended and the fan-out did not end it, so the
		// parent did, before this failure: its error comes first.
		b.stopped = true
		b.errs = append(b.errs, b.stopReason())
	}
	b.errs = append(b.errs, &ItemError{Index: i, Err: err})
	first := b.failFast && !b.stopped
	if first {
		b.stopped = true
	}
	b.mu.Unlock()
	if first {
		b.cancel(errStopped)
	}
}

// record stores the outcome of item i. In Stream mode it reports false when
// the loop has stopped reading, so the worker ends.
func (b *batch[T, R]) record(i int, r Result[R]) bool {
	switch b.mode {
	case modeMap:
		if r.Err != nil {
			b.fail(i, r.Err)
		}
	case modeSettle:
		b.res[i] = r
	case modeStream:
		select {
		case b.sink <- item[R]{index: i, result: r}:
		case <-b.quit:
			return false
		}
	}
	return true
}

// isCancellation reports whether err is a context's own error rather than a
// failure with a cause of its own. A panic is never a cancellation.
func isCancellation(err error) bool {
	var p *PanicError
	if errors.As(err, &p) || errors.Is(err, errGoexit) {
		return false
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
