// Package fanout runs one function over many items, or several functions at
// once, with a bound on concurrency, optional pacing and per-call deadlines,
// and turns their outcomes into ordered results and errors that
// [errors.Is] and [errors.As] see through. A panic in a call becomes a
// *[PanicError], never a crash.
//
// # Choosing a function
//
//   - [Map] returns the values in input order and stops at the first
//     failure: errgroup with ordered results.
//   - [Settle] runs every item to the end and returns a [Result] for each,
//     like Python's asyncio.gather(return_exceptions=True).
//   - [Do] runs heterogeneous functions and joins their failures.
//   - [First] returns the first success among replicas of one call and
//     cancels the rest; with [Hedge] it calls a replica only when the ones
//     already asked are slow.
//   - [Stream] yields results in completion order as an [iter.Seq2]; breaking
//     out of the loop cancels the rest.
//
// # Options and defaults
//
// Every function takes trailing [Option] values. [Limit] bounds how many
// calls run at once; it defaults to [DefaultLimit] (16), never to
// "unlimited", and Map, Settle and Stream start exactly min(limit, items)
// worker goroutines. [Rate] paces starts with a token bucket from
// golang.org/x/time/rate. [Timeout] gives each call its own deadline.
// [FailFast] turns Map's and Do's stop-at-first-failure (the default) off.
// [Hedge] applies to First only.
//
// A bad option (Limit(0), a negative Timeout, a Rate burst below 1, an
// option given to a function it does not apply to) is an error wrapping
// [ErrInvalidOption], and nothing is called. Map, Do and First return it;
// Settle and Stream, which have no error result, put it in the Err of every
// item's [Result].
//
// # Errors
//
// Map, Do and First tag each failure with its position in the input as an
// *[ItemError], whose Unwrap returns the cause. One failure is returned as
// the *ItemError itself; several are joined with [errors.Join], first
// failure first. A panic is a *[PanicError] carrying the value and the
// stack; its Unwrap returns the value when that is an error, so
// panic(io.EOF) still matches errors.Is(err, io.EOF).
//
// When a run stops (after a failure under FailFast, or because ctx ended),
// the calls that then return only context.Canceled or
// context.DeadlineExceeded are echoes of the stop, not failures of their
// own, and are left out of the error; when ctx ended, ctx.Err() stands for
// them. Settle and Stream report each call's error as it was returned.
//
// # Cancellation waits
//
// Cancelling a call's context asks it to stop; it does not abandon it.
// Every function returns, and a Stream loop ends, only after every call it
// started has returned, so no goroutine outlives it and nothing a call
// writes can race with the caller. When ctx is already done, no call
// starts; when it ends midway, calls not yet started never start (Settle
// and Stream report ctx.Err() for them).
//
// # Cost
//
// Map and Settle use a fixed set of workers that claim the next indices from
// an atomic counter and write results straight into the output slice. With
// neither Timeout nor Rate there are no per-item allocations, channel
// operations or locks: a constant number of allocations per call, and a
// per-item overhead below a bare loop that claims one index at a time (see
// the benchmarks in this package). A worker starts by claiming one item and
// claims more at once (up to 256, and never more than a small share of the
// items left) only while its calls return within microseconds, so calls
// that wait on I/O are still handed out one at a time to whichever worker
// is free. Timeout adds a context per call, Rate a token-bucket reservation
// per call, and Stream a channel send per result; those claim one item at a
// time.
package fanout
