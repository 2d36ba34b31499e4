package taskqueue

import (
	"context"
	"time"
)

// Store holds the state of tasks; the Runner is the worker loop over it. The
// in-memory store (NewMemoryStore) is the default; a durable store shared by
// several processes implements the same interface and passes the same
// conformance suite, taskqueuetest.Run.
//
// Every method is safe for concurrent use. Claim gives each claim of a task
// a ClaimToken that no other claim of that task shares (not the attempt
// number, which Release gives back). Methods that take an id and a claim
// token change a task only while that claim holds it (status running, same
// token) and otherwise return ErrLeaseLost (ErrNotFound for an id the
// store does not hold), so a late or duplicate update from a lapsed claim
// never overwrites newer state. A store that records a
// cancel request for a running task (see Cancel) turns that claim's Finish,
// Retry and Release into a cancellation.
//
// Every change a store makes to a task's Info counts one more Version,
// starting from 1 at Insert, so that the Infos of one task are ordered by
// their Version in every process that shares the store.
//
// Time is the caller's: a store reads the clock with time.Now, and Claim
// returns when a delayed task falls due rather than at some later poll.
// taskqueuetest checks delays, backoff and retention to the nanosecond
// inside testing/synctest bubbles, whose fake clock only time.Now sees.
type Store interface {
	// Insert stores t as a pending task due at t.RunAt (at once when zero).
	// The store sets CreatedAt; the Runner has filled ID, Kind, MaxAttempts,
	// UniqueKey, Payload, Timeout and Metadata. When t.UniqueKey is not empty and a
	// pending or running task of t.Kind holds that key, Insert stores
	// nothing and returns that task with inserted false; concurrent
	// Inserts of one kind and key, from any number of processes, store one
	// task. A store that is full returns ErrQueueFull. An id the store
	// already holds is an error, and the task holding it is left alone.
	// The store may keep t.Payload and t.Metadata without copying them
	// (see Task.Metadata); the Infos it
	// returns, here and from every other method, share no bytes with what
	// it holds.
	Insert(ctx context.Context, t Task) (info Info, inserted bool, err error)

	// Claim waits until a pending task of one of kinds (nil: any kind) is
	// due, marks it running (Attempt one higher, StartedAt now, a new
	// ClaimToken), and returns it with the Payload, Timeout and Metadata
	// it was inserted with. Due tasks are claimed first come, first
	// served. It returns ctx's error when ctx ends first, and a Claim
	// whose ctx has ended claims nothing.
	Claim(ctx context.Context, kinds []string) (Task, error)

	// Heartbeat renews the lease of a running claim and reports whether
	// the task's cancellation was requested with Cancel.
	Heartbeat(ctx context.Context, id string, claim int64) (cancelRequested bool, err error)

	// Progress records the progress of a running claim. A percent outside
	// 0..100 or a message longer than MaxProgressMessage is an error.
	Progress(ctx context.Context, id string, claim int64, p Progress) error

	// Finish ends a running attempt, and so the task, with o. If the task's
	// cancellation was requested it ends canceled whatever o says.
	Finish(ctx context.Context, id string, claim int64, o Outcome) (Info, error)

	// Retry ends a failed running attempt: the task is pending again, due
	// after delay, with errMsg as its Error. Error texts (here and in
	// Finish's Outcome) are at most MaxErrorMessage bytes, and a store keeps
	// them whole.
	Retry(ctx context.Context, id string, claim int64, delay time.Duration, errMsg string) (Info, error)

	// Release gives a running attempt back without counting it: the task is
	// pending again, due at once, with Attempt one lower. The Runner
	// releases the tasks it was running when it is shut down.
	Release(ctx context.Context, id string, claim int64) (Info, error)

	// Cancel cancels a task. A pending task is canceled at once. For a
	// running task the request is recorded and the task is returned still
	// running; the attempt ends canceled (see Finish). A finished task is
	// left alone and the error is ErrFinished; an unknown id is ErrNotFound.
	Cancel(ctx context.Context, id string) (Info, error)

	// Get returns the task id, or ErrNotFound.
	Get(ctx context.Context, id string) (Info, error)

	// List returns up to q.Limit tasks matching q, newest first (CreatedAt
	// descending, then ID descending), after q.After when set.
	List(ctx context.Context, q ListQuery) ([]Info, error)

	// DeleteFinishedBefore deletes the tasks that finished before cutoff
	// and returns how many it deleted.
	DeleteFinishedBefore(ctx context.Context, cutoff time.Time) (int, error)

	// Stats counts the tasks the store holds, by status.
	Stats(ctx context.Context) (Stats, error)
}

// CancelNotifier is implemented by a Store that learns of cancel requests
// as they are made, through any of the processes that share it (a durable
// store may hear of them by notification). A Runner whose Store implements
// it interrupts a running task's handler as soon as the store reports the
// request, rather than at the attempt's next Heartbeat.
type CancelNotifier interface {
	// NotifyCancel arranges for fn to be called with the id of each running
	// task whose cancellation is requested from now on, until stop is
	// called; stop waits for calls of fn already under way. fn must return
	// quickly, and may be told of tasks that run in other processes, or
	// twice of one task.
	NotifyCancel(fn func(id string)) (stop func())
}

// KindCounter is implemented by a Store that counts its tasks by kind as
// well as by status, for Runner.StatsByKind. Both stores in this module
// implement it.
type KindCounter interface {
	// StatsByKind returns the counts of Stats for each kind the store
	// holds tasks of; their sum is what Stats returns. A kind with no
	// tasks is absent.
	StatsByKind(ctx context.Context) (map[string]Stats, error)
}
