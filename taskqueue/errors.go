package taskqueue

import (
	"errors"
	"fmt"
)

// Sentinel errors that callers branch on with errors.Is.
var (
	// ErrUnknownKind is returned by Submit for a kind no handler was
	// registered for.
	ErrUnknownKind = errors.New("taskqueue: unknown task kind")
	// ErrQueueFull is returned by Submit when the store holds as many
	// waiting tasks as it may. It is backpressure: retry later or shed load.
	ErrQueueFull = errors.New("taskqueue: queue full")
	// ErrNotFound is returned for an id that never existed, is malformed, or
	// belonged to a finished task dropped after Retention (or, in a
	// MemoryStore, past MemoryOptions.MaxFinished). It is never disguised
	// as a pending task.
	ErrNotFound = errors.New("taskqueue: task not found")
	// ErrClosed is returned by Submit and Start once Shutdown has begun, and
	// by Wait when the Runner shuts down before the task finishes.
	ErrClosed = errors.New("taskqueue: runner closed")
	// ErrFinished is returned by Cancel for a task that has already reached
	// a terminal status; the task is left as it was.
	ErrFinished = errors.New("taskqueue: task already finished")
	// ErrInvalidCursor is returned by List for a cursor that was not made by
	// List: malformed, of an unknown version, or not canonical.
	ErrInvalidCursor = errors.New("taskqueue: invalid cursor")
	// ErrLeaseLost is returned by a Store when an update names an attempt
	// that no longer holds its task: the task was finished, released, or
	// claimed again. The Runner drops that attempt's outcome.
	ErrLeaseLost = errors.New("taskqueue: attempt no longer holds the task")
	// ErrTooManySubscriptions is returned by Subscribe and Wait when
	// MaxSubscriptions are open on the Runner: shed the caller (an HTTP
	// long-poll might answer 503) or fall back to polling Get.
	ErrTooManySubscriptions = errors.New("taskqueue: too many subscriptions open")
	// ErrCanceled is the cause of a handler's ctx when its task is cancelled
	// with Cancel (read it with context.Cause).
	ErrCanceled = errors.New("taskqueue: task canceled")
)

// Permanent marks err as not worth retrying: a handler that returns
// Permanent(err) fails its task at once, whatever attempts remain. The
// returned error wraps err, so errors.Is and errors.As see through it.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was made by
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// ShutdownError is returned by Shutdown when work was left behind: tasks
// still pending in the store, tasks whose handlers were interrupted when the
// Shutdown ctx ended (they are pending again, their attempt not counted), or
// both. Err is the Shutdown ctx's error when it ended first, else nil.
type ShutdownError struct {
	// Pending is the number of tasks still pending in the store after the
	// workers stopped, including Interrupted ones.
	Pending int
	// Interrupted is the number of running tasks whose handlers were
	// cancelled because the Shutdown ctx ended.
	Interrupted int
	// Err is the Shutdown ctx's error if it ended before every running
	// handler returned on its own.
	Err error
}

// Error says how many tasks were left pending and interrupted, and the
// ctx's error if there was one.
func (e *ShutdownError) Error() string {
	msg := fmt.Sprintf("taskqueue: shut down with %d task(s) pending (%d interrupted)", e.Pending, e.Interrupted)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the Shutdown ctx's error, if any.
func (e *ShutdownError) Unwrap() error { return e.Err }
