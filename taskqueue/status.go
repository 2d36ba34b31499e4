package taskqueue

import "fmt"

// Status is where a task is in its life: pending, then running, then one of
// the terminal statuses succeeded, failed or canceled. A retried task goes
// back from running to pending. The zero Status is invalid.
type Status uint8

// The statuses of a task.
const (
	// StatusPending: waiting to run, now or at its RunAt.
	StatusPending Status = iota + 1
	// StatusRunning: a handler is working on it.
	StatusRunning
	// StatusSucceeded: the handler returned a result. Terminal.
	StatusSucceeded
	// StatusFailed: the last attempt failed, or a failure was permanent. Terminal.
	StatusFailed
	// StatusCanceled: cancelled with Cancel. Terminal.
	StatusCanceled
)

var statusNames = [...]string{
	StatusPending:   "pending",
	StatusRunning:   "running",
	StatusSucceeded: "succeeded",
	StatusFailed:    "failed",
	StatusCanceled:  "canceled",
}

// String returns the status's lower-case name, such as "running", or
// "Status(N)" for an invalid value.
func (s Status) String() string {
	if s.Valid() {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool { return s >= StatusPending && s <= StatusCanceled }

// Terminal reports whether s is succeeded, failed or canceled: a task in a
// terminal status never changes again.
func (s Status) Terminal() bool { return s >= StatusSucceeded && s <= StatusCanceled }

// MarshalText encodes s as its name. An invalid Status is an error.
func (s Status) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("taskqueue: cannot marshal invalid status %d", uint8(s))
	}
	return []byte(statusNames[s]), nil
}

// UnmarshalText decodes a status name as written by MarshalText. Any other
// text, including the empty string, is an error.
func (s *Status) UnmarshalText(text []byte) error {
	st, err := ParseStatus(string(text))
	if err != nil {
		return err
	}
	*s = st
	return nil
}

// ParseStatus returns the Status named name ("pending", "running",
// "succeeded", "failed" or "canceled"). Any other name is an error, suitable
// for a 400 response to a ?status= query parameter.
func ParseStatus(name string) (Status, error) {
	for st := StatusPending; st <= StatusCanceled; st++ {
		if statusNames[st] == name {
			return st, nil
		}
	}
	if len(name) > 32 {
		name = name[:32] + "…"
	}
	return 0, fmt.Errorf("taskqueue: unknown status %q", name)
}
