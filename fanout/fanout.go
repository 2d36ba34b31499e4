package fanout

import (
	"context"
	"fmt"
)

// Result is the outcome of one call: the value fn returned and its error
// (nil on success, a *[PanicError] if it panicked, or the context's error if
// it never started).
type Result[R any] struct {
	// Value is what fn returned, even alongside an error.
	Value R
	// Err is fn's error, a *PanicError, or why the call never started.
	Err error
}

// Map calls fn for every item, at most [Limit] at a time, and returns the
// values in input order: out[i] is fn's value for items[i].
//
// By default the first failure stops the run ([FailFast]): the context
// passed to the calls still running is cancelled, no further call starts,
// and Map returns once every call it started has returned. The error then
// names the item: an *[ItemError] whose Err is what fn returned (or a
// *[PanicError]). Calls that fail on their own before they see the
// cancellation are kept too, joined after the first, while errors that only
// echo the cancellation (context.Canceled or DeadlineExceeded from a
// stopped run) are left out. With FailFast(false) every item runs and all
// failures are joined.
//
// When ctx ends before every item has run, Map returns promptly (after the
// running calls return) with ctx.Err() among its errors; when ctx is
// already done, fn is not called. The error is nil exactly when fn returned
// nil for every item. Even with an error, out has len(items) entries: the
// values of the items that succeeded, and zero values elsewhere.
//
// An empty items returns an empty slice and nil. A nil ctx or fn, or an
// invalid option, returns a nil slice and an error, and calls nothing.
//
// Cost: min(limit, len(items)) goroutines and a constant number of
// allocations per call, none per item unless [Timeout] or [Rate] is set.
func Map[T, R any](ctx context.Context, items []T, fn func(context.Context, T) (R, error), opts ...Option) ([]R, error) {
	c, err := prepare(ctx, fn == nil, opMap, opts)
	if err != nil {
		return nil, err
	}
	return mapWith(ctx, items, fn, c)
}

// mapWith is Map after validation; Do shares it.
func mapWith[T, R any](ctx context.Context, items []T, fn func(context.Context, T) (R, error), c *config) ([]R, error) {
	out := make([]R, len(items))
	if len(items) == 0 {
		return out, nil
	}
	if err := ctx.Err(); err != nil {
		return out, err
	}
	b := newBatch(ctx, modeMap, items, fn, c)
	b.out = out
	b.run(workers(c, len(items)))
	return out, join(b.errs)
}

// Settle calls fn for every item, at most [Limit] at a time, and returns
// one [Result] per item in input order. It never fails fast: every item
// runs to the end whatever happens to the others. It is the Go form of
// Python's asyncio.gather(return_exceptions=True). A panicking call gets a
// *[PanicError]; items that never start because ctx ended get ctx.Err(),
// or an error wrapping context.DeadlineExceeded when [Rate] could not start
// them before ctx's deadline.
//
// Settle has no error return, so a nil ctx or fn, or an invalid option,
// is reported in every Result's Err and fn is never called. An empty items
// returns an empty slice. Settle returns once every call it started has
// returned.
//
// Cost: as for [Map].
func Settle[T, R any](ctx context.Context, items []T, fn func(context.Context, T) (R, error), opts ...Option) []Result[R] {
	res := make([]Result[R], len(items))
	if len(items) == 0 {
		return res
	}
	c, err := prepare(ctx, fn == nil, opSettle, opts)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		for i := range res {
			res[i].Err = err
		}
		return res
	}
	b := newBatch(ctx, modeSettle, items, fn, c)
	b.res = res
	b.run(workers(c, len(items)))
	return res
}

// Do runs heterogeneous functions concurrently, at most [Limit] at a time,
// and returns their failures joined, each an *[ItemError] whose Index is
// the function's position in fns; nil when all succeed. Like [Map], it
// fails fast by default: the first failure cancels the others' context and
// no further function starts. With FailFast(false) every function runs.
// Do returns once every function it started has returned.
//
// The functions come as a slice, not variadic, so that options stay the
// trailing variadic arguments as in every other function of this package.
// An empty fns returns nil. A nil ctx or a nil function, or an invalid
// option, is an error, and nothing is called.
func Do(ctx context.Context, fns []func(context.Context) error, opts ...Option) error {
	c, err := prepare(ctx, false, opDo, opts)
	if err != nil {
		return err
	}
	for i, f := range fns {
		if f == nil {
			return nilFuncAt(i)
		}
	}
	_, err = mapWith(ctx, fns, callErrFunc, c)
	return err
}

func callErrFunc(ctx context.Context, f func(context.Context) error) (struct{}, error) {
	return struct{}{}, f(ctx)
}

// prepare validates the arguments every function shares and resolves opts.
func prepare(ctx context.Context, nilFn bool, o op, opts []Option) (*config, error) {
	if ctx == nil {
		return nil, errNilContext
	}
	if nilFn {
		return nil, errNilFunc
	}
	return newConfig(o, opts)
}

// nilFuncAt returns the error for a nil function at index i of fns.
func nilFuncAt(i int) error { return fmt.Errorf("%w: fns[%d]", errNilFunc, i) }
