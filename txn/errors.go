package txn

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors returned by this package. Callers branch on them with
// errors.Is.
var (
	// ErrCommitUnknown is matched, through errors.Is, by a *CommitError whose
	// outcome is unknown: the connection was lost (or the context ended)
	// while COMMIT was on its way, so the transaction may or may not have
	// been applied. Do never retries it, because retrying blindly can apply
	// the work twice; the caller must find out, for example by looking the
	// row up again, or by using an idempotency key.
	ErrCommitUnknown = errors.New("txn: commit outcome unknown")

	// ErrOtherDB is returned by a nested Do given a different *sql.DB from
	// the one whose transaction ctx carries. Silently opening a second,
	// independent transaction would break the atomicity the caller asked for.
	ErrOtherDB = errors.New("txn: nested Do on a different *sql.DB from the transaction in ctx")

	// ErrNestedOptions is returned by a nested Do given an isolation level or
	// read-only flag that differs from the outermost transaction's: a
	// savepoint cannot change either.
	ErrNestedOptions = errors.New("txn: nested Do asks for an isolation level or read-only flag the outermost transaction does not have")

	// ErrTxDone is returned by Do, AfterCommit and AfterRollback given a ctx
	// whose transaction has already ended, for example a ctx kept past the
	// return of the fn it was passed to.
	ErrTxDone = errors.New("txn: the transaction in ctx has already ended")
)

// CommitError reports that the COMMIT of the outermost transaction failed,
// as distinct from an error returned by fn. When Unknown is false the
// database refused the commit and the transaction was rolled back (a
// Postgres serialization failure at commit, for example, which Do retries
// like any other). When Unknown is true the outcome is not known and
// errors.Is(err, ErrCommitUnknown) reports true.
type CommitError struct {
	// Err is the error from (*sql.Tx).Commit.
	Err error
	// Unknown reports whether the transaction may have committed anyway.
	Unknown bool
}

// Error describes the failed commit and its cause.
func (e *CommitError) Error() string {
	if e.Unknown {
		return "txn: commit outcome unknown: " + e.Err.Error()
	}
	return "txn: commit failed: " + e.Err.Error()
}

// Unwrap returns the error from Commit.
func (e *CommitError) Unwrap() error { return e.Err }

// Is reports whether target is ErrCommitUnknown and the outcome is unknown.
func (e *CommitError) Is(target error) bool { return target == ErrCommitUnknown && e.Unknown }

// PanicError is a panic recovered from a hook, with the stack of the
// goroutine at the point of the panic.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the output of runtime/debug.Stack taken in the recovery.
	Stack []byte
}

// Error describes the panic value; the stack is in Stack.
func (e *PanicError) Error() string { return fmt.Sprintf("txn: hook panicked: %v", e.Value) }

// Unwrap returns the panic value when it is an error, so that errors.Is and
// errors.As see through to it, and nil otherwise.
func (e *PanicError) Unwrap() error {
	if err, ok := e.Value.(error); ok {
		return err
	}
	return nil
}

// HookError reports hooks that panicked. Every hook runs however many of
// the others panic. When Committed is true the hooks ran after a successful
// commit (or at once, outside any transaction): the work is durable and must
// not be retried because of this error.
type HookError struct {
	// Committed reports whether the hooks were AfterCommit hooks, which run
	// only once the work is committed.
	Committed bool
	// Panics holds one entry per hook that panicked, in the order they ran.
	Panics []*PanicError
}

// Error lists the panic values.
func (e *HookError) Error() string {
	var b strings.Builder
	if e.Committed {
		b.WriteString("txn: committed, but ")
	} else {
		b.WriteString("txn: ")
	}
	fmt.Fprintf(&b, "%d hook(s) panicked", len(e.Panics))
	for _, p := range e.Panics {
		fmt.Fprintf(&b, "; %v", p.Value)
	}
	return b.String()
}

// Unwrap returns the panics as errors, for errors.Is and errors.As.
func (e *HookError) Unwrap() []error {
	errs := make([]error, len(e.Panics))
	for i, p := range e.Panics {
		errs[i] = p
	}
	return errs
}
