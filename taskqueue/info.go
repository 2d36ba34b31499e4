package taskqueue

import (
	"encoding/json"
	"time"
)

// Info is what a caller can know about a task: a snapshot, safe to keep and
// to write as JSON (Status as its name, Result embedded as JSON). Times
// carry no monotonic reading; zero times are omitted from JSON.
type Info struct {
	// ID identifies the task; it is made by Submit and never reused.
	ID string `json:"id"`
	// Kind names the handler that runs the task.
	Kind string `json:"kind"`
	// Status is where the task is in its life.
	Status Status `json:"status"`
	// Progress is the latest progress the handler reported (see Job.Progress).
	Progress Progress `json:"progress"`
	// Attempt is the number of attempts started so far (1 while the first runs).
	Attempt int `json:"attempt"`
	// MaxAttempts is how many attempts the task may have in all.
	MaxAttempts int `json:"max_attempts"`
	// UniqueKey is the key given with the UniqueKey option, if any.
	UniqueKey string `json:"unique_key,omitempty"`
	// Result is the handler's result encoded as JSON, once succeeded.
	Result json.RawMessage `json:"result,omitempty"`
	// Error is the last attempt's error: the handler's error text, a panic
	// value with its stack, or a timeout message; at most MaxErrorMessage
	// bytes.
	Error string `json:"error,omitempty"`
	// CreatedAt is when the task was submitted.
	CreatedAt time.Time `json:"created_at"`
	// RunAt is when the task is (or was) due to run next.
	RunAt time.Time `json:"run_at,omitzero"`
	// StartedAt is when the latest attempt started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// FinishedAt is when the task reached its terminal status.
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Version counts the changes of the task: 1 when it is submitted, and
	// one more with each change a store makes to its Info (a claim, a
	// progress write, a retry, a release, a cancel, the end). It is kept by
	// the store, so every process sharing a store sees the same Version for
	// the same state, and of two Infos of one task the higher Version is
	// the newer. A cancel request for a running task changes nothing
	// visible until the attempt ends, and no Version.
	Version int64 `json:"version"`
}

// Progress is a handler's report of how far a task has got.
type Progress struct {
	// Percent is between 0 and 100.
	Percent int `json:"percent"`
	// Message says what the handler is doing; at most MaxProgressMessage bytes.
	Message string `json:"message,omitempty"`
}

// MaxErrorMessage is the longest Info.Error the Runner stores, in bytes. A
// longer error text, panic value or stack is cut on a rune boundary and
// marked with how many bytes were cut, so that a handler returning a huge
// error cannot make each task it fails hold megabytes.
const MaxErrorMessage = 16 << 10

// MaxProgressMessage is the longest progress message Job.Progress accepts, in bytes.
const MaxProgressMessage = 1024

// Task is the stored form of a task: its Info and what the Runner needs to
// run it. Stores receive it from Insert and hand it back from Claim.
type Task struct {
	Info
	// Payload is the handler's input encoded as JSON.
	Payload json.RawMessage
	// Timeout is the per-attempt limit set with the Timeout option; zero
	// means the Runner's default.
	Timeout time.Duration
	// Metadata is what the Metadata option gave, nil when it gave
	// nothing; the Runner has validated it. A store keeps it as it is
	// until the task finishes, and hands it back from every Claim of the
	// task. Neither the Runner nor a store changes the map once it is
	// given to Insert, so a store may keep it, and return it from Claim,
	// without copying it. A store may drop it once the task finishes.
	Metadata map[string]string
	// ClaimToken, set by Claim, identifies this claim of the task in the
	// updates that follow (Progress, Heartbeat, Finish, Retry, Release).
	ClaimToken int64
	// LeaseUntil, set by Claim in a store that uses leases, is when the
	// claim lapses unless renewed with Heartbeat. Zero means no lease: the
	// claim holds until the attempt ends.
	LeaseUntil time.Time
}

// Outcome is how an attempt ended, as given to Store.Finish.
type Outcome struct {
	// Status is StatusSucceeded, StatusFailed or StatusCanceled.
	Status Status
	// Result is the encoded result of a succeeded task.
	Result json.RawMessage
	// Error is the error text of a failed or canceled task.
	Error string
}

// Filter selects the tasks List returns. Its zero value selects every task.
type Filter struct {
	// Status, when not zero, keeps only tasks in this status.
	Status Status
	// Kind, when not empty, keeps only tasks of this kind.
	Kind string
}

// Position is a place in the listing order (CreatedAt, then ID, both
// descending). A List cursor encodes one.
type Position struct {
	// CreatedAt is the task's creation time.
	CreatedAt time.Time
	// ID is the task's id, which orders tasks created at the same time.
	ID string
}

// ListQuery is what the Runner asks of Store.List.
type ListQuery struct {
	Filter
	// After, when not nil, starts the listing after this position.
	After *Position
	// FinishedAfter, when not zero, hides finished tasks whose FinishedAt
	// is not after it: they have outlived Retention even if not yet deleted.
	FinishedAfter time.Time
	// Limit is the most tasks to return; it is at least 1.
	Limit int
}

// Stats counts the tasks a store holds, by status. Finished tasks are
// counted until they are deleted after Retention.
type Stats struct {
	// Pending counts tasks waiting to run, due now or later.
	Pending int `json:"pending"`
	// Running counts tasks a handler is working on.
	Running int `json:"running"`
	// Succeeded counts tasks that succeeded.
	Succeeded int `json:"succeeded"`
	// Failed counts tasks that failed.
	Failed int `json:"failed"`
	// Canceled counts tasks that were cancelled.
	Canceled int `json:"canceled"`
}
