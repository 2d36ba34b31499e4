package fanout

import (
	"context"
	"iter"
)

// Stream returns a sequence that, when ranged over, calls fn for every item,
// at most [Limit] at a time, and yields each item's index and [Result] in
// the order the calls complete. Every item is yielded exactly once: a
// panicking call yields a *[PanicError], and items that never start because
// ctx ended yield ctx.Err(). Like [Settle], a failure does not stop the
// others.
//
// Breaking out of the loop early cancels the context of the calls still
// running and starts no more; the loop statement completes only once every
// call started has returned, so nothing outlives it.
//
// Each range over the sequence runs the calls again. A nil ctx or fn, or an
// invalid option ([FailFast] and [Hedge] do not apply), is reported in the
// Err of every yielded Result, in index order, and fn is never called.
//
// Cost: as for [Map], plus one channel send per item; the channel holds at
// most Limit results, so a slow loop body holds the workers back rather
// than letting results pile up.
func Stream[T, R any](ctx context.Context, items []T, fn func(context.Context, T) (R, error), opts ...Option) iter.Seq2[int, Result[R]] {
	c, err := prepare(ctx, fn == nil, opStream, opts)
	return func(yield func(int, Result[R]) bool) {
		if len(items) == 0 {
			return
		}
		if err != nil {
			for i := range items {
				if !yield(i, Result[R]{Err: err}) {
					return
				}
			}
			return
		}
		w := workers(c, len(items))
		sink := make(chan item[R], w)
		quit := make(chan struct{})
		b := newBatch(ctx, modeStream, items, fn, c)
		b.sink, b.quit = sink, quit
		b.start(w)
		// Runs on every way out, including a panic in the loop body: stop
		// the calls, release workers blocked on a send, and wait for them.
		defer func() {
			b.cancel(errStopped)
			close(quit)
			b.wg.Wait()
		}()
		for range len(items) {
			m := <-sink
			if !yield(m.index, m.result) {
				return
			}
		}
	}
}
