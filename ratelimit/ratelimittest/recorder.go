package ratelimittest

import (
	"sync"

	"github.com/asynckit/asynckit/ratelimit"
)

// Recorder keeps the events a [ratelimit.Guarded] limiter reports, for a
// test of its failure policy: pass its Observe method as
// [ratelimit.FailureOptions].Observe. A Recorder is safe for concurrent
// use, and its zero value is ready. It keeps every event, so it is for
// tests, not for a long-running service.
type Recorder struct {
	mu     sync.Mutex
	events []ratelimit.Event
}

// Observe records ev.
func (r *Recorder) Observe(ev ratelimit.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// Events returns a copy of the events recorded so far, oldest first.
func (r *Recorder) Events() []ratelimit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ratelimit.Event(nil), r.events...)
}

// Last returns the latest event, or the zero Event if there is none.
func (r *Recorder) Last() ratelimit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return ratelimit.Event{}
	}
	return r.events[len(r.events)-1]
}
