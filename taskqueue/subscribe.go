package taskqueue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// MaxSubscriptions bounds the Subscribe channels (Wait calls included)
// open at once on one Runner; Subscribe beyond it is
// ErrTooManySubscriptions.
const MaxSubscriptions = 1 << 16

// hub fans task updates out to subscriptions. Publishing never blocks: each
// subscription is a channel of one Info that always holds the latest.
type hub struct {
	n      atomic.Int64 // open subscriptions, read without the lock on the hot path
	mu     sync.Mutex
	subs   map[string][]*subscription
	closed bool
}

type subscription struct {
	id   string
	ch   chan Info
	stop func() bool // stops the ctx watch
	done bool
	at   int // index in h.subs[id] while registered
	// published is set once an update has been published to s: from then
	// on it holds a state at least as new as Subscribe's own second read.
	published bool
	// version is the Version of the newest Info delivered to s.
	version int64
}

func (h *hub) active() bool { return h.n.Load() > 0 }

// deliver replaces whatever s holds with info, unless s has had info's
// state or a newer one: a re-read of the store that began before a change
// published meanwhile must not take the subscriber back, nor a poll that
// finds nothing new repeat what it has. Infos without a Version (from a
// store that keeps none) are always delivered. h.mu is held.
func (s *subscription) deliver(info Info) {
	if info.Version != 0 && info.Version <= s.version {
		return
	}
	s.version = info.Version
	select {
	case <-s.ch:
	default:
	}
	s.ch <- info // the only sender holds h.mu, and the buffer is now empty
}

// end closes s. h.mu is held.
func (h *hub) end(s *subscription) {
	if s.done {
		return
	}
	s.done = true
	close(s.ch)
	s.stop()
	h.n.Add(-1)
}

func (h *hub) publish(info Info) {
	if !h.active() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.subs[info.ID]
	if len(subs) == 0 {
		return
	}
	for _, s := range subs {
		s.published = true
		s.deliver(info)
	}
	if info.Status.Terminal() {
		for _, s := range subs {
			h.end(s)
		}
		delete(h.subs, info.ID)
	}
}

func (h *hub) remove(s *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.done {
		h.end(s)
		h.removeLocked(s)
	}
}

// watched appends the ids that have subscribers to ids.
func (h *hub) watched(ids []string) []string {
	if !h.active() {
		return ids
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for id := range h.subs {
		ids = append(ids, id)
	}
	return ids
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, subs := range h.subs {
		for _, s := range subs {
			h.end(s)
		}
		delete(h.subs, id)
	}
}

// Subscribe returns a channel that receives the task's Info: the current
// one at once, then each change (start, progress, retry, finish). The
// channel holds one value and always the latest: a slow reader misses
// intermediate updates but never the terminal one, and the Runner never
// blocks on it. The channel is closed after the terminal Info, when ctx
// ends, or when the Runner shuts down.
//
// Updates come from this Runner, and with Options.PollInterval set also
// from re-reading the store, which sees changes made by other processes
// that share it. The Infos received have increasing Versions: a state is
// never received twice, and never after a newer one.
// An unknown or expired id is ErrNotFound; more than MaxSubscriptions open
// at once is ErrTooManySubscriptions. A ctx that has already ended gives
// the current Info and a channel closed after it. A task that is already
// finished gives its final Info and a closed channel, and holds no place.
func (r *Runner) Subscribe(ctx context.Context, id string) (<-chan Info, error) {
	info, err := r.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	h := &r.hub
	s := &subscription{id: id, ch: make(chan Info, 1), stop: func() bool { return false }}
	s.deliver(info)
	h.mu.Lock()
	switch {
	case h.closed || info.Status.Terminal():
		close(s.ch)
		h.mu.Unlock()
		return s.ch, nil
	case h.n.Load() >= MaxSubscriptions:
		h.mu.Unlock()
		return nil, fmt.Errorf("%w: %d", ErrTooManySubscriptions, MaxSubscriptions)
	}
	h.n.Add(1)
	s.at = len(h.subs[id])
	h.subs[id] = append(h.subs[id], s)
	h.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { h.remove(s) })

	// Read again now that updates reach s, so that a change made between
	// the first read and the registration, above all the terminal one, is
	// not missed.
	latest, err := r.store.Get(ctx, id)
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.done {
		stop()
		return s.ch, nil
	}
	s.stop = stop
	switch {
	case err == nil:
		// An update published to s since it was registered may be newer
		// than this read, which began before it; only a terminal state is
		// certain to be the newest (deliver also checks the Versions).
		if !s.published || latest.Status.Terminal() {
			s.deliver(latest)
		}
		if latest.Status.Terminal() {
			h.end(s)
			h.removeLocked(s)
		}
	case errors.Is(err, ErrNotFound):
		// It finished and was swept in between: nothing more will come.
		h.end(s)
		h.removeLocked(s)
	}
	return s.ch, nil
}

// removeLocked unregisters s in O(1), moving the task's last subscription
// into its place, so that many subscribers of one task leaving cost no
// more than as many leaving one each. h.mu is held.
func (h *hub) removeLocked(s *subscription) {
	subs := h.subs[s.id]
	last := len(subs) - 1
	if s.at > last || subs[s.at] != s {
		return
	}
	subs[s.at] = subs[last]
	subs[s.at].at = s.at
	subs[last] = nil
	subs = subs[:last]
	if len(subs) == 0 {
		delete(h.subs, s.id)
	} else {
		h.subs[s.id] = subs
	}
}

// Wait blocks until the task id reaches a terminal status and returns its
// final Info. If ctx ends first it returns the latest Info seen and ctx's
// error; if the Runner shuts down first, the latest Info and ErrClosed. An
// unknown or expired id is ErrNotFound. Wait holds a subscription while it
// blocks, so past MaxSubscriptions it is ErrTooManySubscriptions.
func (r *Runner) Wait(ctx context.Context, id string) (Info, error) {
	ch, err := r.Subscribe(ctx, id)
	if err != nil {
		return Info{}, err
	}
	var last Info
	for info := range ch {
		last = info
	}
	switch {
	case last.Status.Terminal():
		return last, nil
	case ctx.Err() != nil:
		return last, ctx.Err()
	default:
		return last, ErrClosed
	}
}
