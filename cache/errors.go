package cache

import (
	"errors"
	"fmt"
)

// ErrClosed is returned by [Cache.GetOrLoad] and [Cache.GetOrLoadMany] when a
// key has to be loaded after [Cache.Close]. Hits are still served.
var ErrClosed = errors.New("cache: closed")

// ErrNotFound is the error a waiter receives for a key that a [BulkLoader]
// did not return. A [Loader] may return it too; like any loader error it is
// cached only when Options.NegativeTTL is set.
var ErrNotFound = errors.New("cache: not found")

// PanicError is the error every waiter of a load receives when the loader
// panicked, or when Options.OnEvict panicked on the load's goroutine, for
// an entry that storing the loaded value evicted (then OnEvict is true, and
// the value is stored all the same). The panic is recovered in the
// goroutine that ran the loader, so a panicking loader or OnEvict never
// crashes the process.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the loader goroutine's stack at the panic, from runtime/debug.Stack.
	Stack []byte
	// OnEvict reports that the panic was in Options.OnEvict, called by the
	// load's goroutine as it stored the loaded value, not in the loader.
	OnEvict bool
}

// Error returns the panic value and the stack.
func (e *PanicError) Error() string {
	if e.OnEvict {
		return fmt.Sprintf("cache: OnEvict panicked while a load stored its value: %v\n\n%s", e.Value, e.Stack)
	}
	return fmt.Sprintf("cache: loader panicked: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error, so errors.Is and
// errors.As see through a panic(err).
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// ErrLoaderExited is the error every waiter of a load receives when the
// loader ended its goroutine without returning or panicking, as
// runtime.Goexit (and so t.FailNow in a test) does.
var ErrLoaderExited = errors.New("cache: loader exited its goroutine without returning")

// ErrKeyNotComparable is returned by [Cache.GetOrLoad] and
// [Cache.GetOrLoadMany] for a key that is not equal to itself, such as a
// floating-point NaN or a value holding one: it could never be found again.
var ErrKeyNotComparable = errors.New("cache: key is not equal to itself (NaN)")
