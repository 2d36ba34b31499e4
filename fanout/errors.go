package fanout

import (
	"context"
	"errors"
	"fmt"
)

// ErrInvalidOption is wrapped by every error that reports a bad Option: an
// out-of-range value, a nil Option, or an Option given to a function it does
// not apply to. Callers can test for it with errors.Is.
var ErrInvalidOption = errors.New("fanout: invalid option")

// These report bad arguments: programming errors, not conditions to branch on.
var (
	errNilContext = errors.New("fanout: nil Context")
	errNilFunc    = errors.New("fanout: nil function")
	errNoFuncs    = errors.New("fanout: First needs at least one function")
)

// errGoexit is the error of a call that ended with runtime.Goexit (for
// example t.FailNow called off the test goroutine) instead of returning.
var errGoexit = errors.New("fanout: call ended with runtime.Goexit without returning")

// errRateDeadline is reported for items the Rate option could not start
// before the context's deadline. It wraps context.DeadlineExceeded, which is
// what those items would report if they waited for the deadline.
var errRateDeadline = fmt.Errorf("fanout: Rate allows no further start before the context deadline: %w", context.DeadlineExceeded)

// PanicError is the error of a call that panicked. The panic is recovered in
// the goroutine that ran the call, so it never crashes the process; the
// other calls go on (or are cancelled, as the function's policy says).
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the panicking goroutine's stack trace, taken at recovery.
	Stack []byte
}

// Error returns the panic value followed by the stack trace, so that a
// logged error is enough to find the faulty line.
func (e *PanicError) Error() string {
	return fmt.Sprintf("fanout: panic: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns Value when it is an error, so errors.Is and errors.As see
// through a panic(err); otherwise it returns nil.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// ItemError tags the error of one call with the position of its item (or
// function, for Do and First) in the input slice. Map, Do and First return
// it, alone or joined with others; errors.Is and errors.As reach Err through
// it.
type ItemError struct {
	// Index is the item's position in the input slice.
	Index int
	// Err is what the call returned, or a *PanicError.
	Err error
}

// Error returns "fanout: item <index>: <cause>".
func (e *ItemError) Error() string {
	return fmt.Sprintf("fanout: item %d: %v", e.Index, e.Err)
}

// Unwrap returns the cause.
func (e *ItemError) Unwrap() error { return e.Err }

// join returns nil for no errors, the error itself for one, and an
// errors.Join of several, in the order given.
func join(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errors.Join(errs...)
}
