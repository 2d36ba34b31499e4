package taskqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynckit/asynckit/pagination"
)

// Runner runs tasks: handlers registered per kind with Handle, a fixed pool
// of worker goroutines started by Start, and the calls that submit, follow
// and cancel tasks. Create it with New; stop it with Shutdown. All methods
// are safe for concurrent use.
type Runner struct {
	opts     Options
	store    Store
	handlers atomic.Pointer[map[string]handler]
	kinds    []string

	// intake guards state: Submit holds it shared, so Shutdown knows no
	// Submit is half-way through once it has it exclusively.
	intake sync.RWMutex
	state  runnerState

	mu            sync.Mutex // guards slots and cancelPending
	slots         []runSlot
	cancelPending map[string]struct{} // cancels that beat their worker's registration

	stopClaims  context.CancelFunc
	stopAll     context.CancelCauseFunc
	wg          sync.WaitGroup
	storeCtx    context.Context
	interrupted atomic.Int64
	stopNotify  func() // ends a CancelNotifier's calls; nil without one
	hub         hub
	sweepKick   chan struct{} // a task finished: the sweeper has work again
	inline      bool          // record attempts on the worker's goroutine (see conclude)
}

type runnerState uint8

const (
	stateNew runnerState = iota
	stateStarted
	stateClosed
)

type runSlot struct {
	id     string
	cancel context.CancelCauseFunc
}

// handler runs one attempt on an encoded payload and returns the encoded
// result.
type handler func(ctx context.Context, job *Job, payload json.RawMessage) (json.RawMessage, error)

// errShutdown is the cause of handlers' ctx when Shutdown's ctx ends first.
var errShutdown = fmt.Errorf("%w: shutdown deadline passed", ErrClosed)

// New returns a Runner configured by opts; see Options for the defaults.
// An invalid option is an error. Register handlers with Handle, then call
// Start.
func New(opts Options) (*Runner, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Runner{opts: o, store: o.Store, cancelPending: make(map[string]struct{}), storeCtx: context.Background()}
	_, r.inline = o.Store.(*MemoryStore)
	r.handlers.Store(&map[string]handler{})
	r.hub.subs = make(map[string][]*subscription)
	r.sweepKick = make(chan struct{}, 1)
	return r, nil
}

// Handle registers fn as the handler of tasks of kind. Payloads reach fn
// decoded from JSON into a P (a payload that does not decode fails the task
// at once, without retries); fn's result is encoded to JSON into Info.Result
// (a result that does not encode, or is larger than MaxPayloadBytes, fails
// the task the same way).
//
// fn returns an error to fail the attempt: it is retried after Backoff
// until MaxAttempts, unless wrapped with Permanent. A panic in fn is a
// failed attempt too, and so is a call of runtime.Goexit (its worker is
// replaced). fn must honour ctx: it ends when the task is
// cancelled (cause ErrCanceled), times out, or the Runner is shut down.
//
// kind must be 1 to 128 bytes. Registering after Start, twice for one kind,
// a nil Runner or a nil fn is an error.
func Handle[P, R any](r *Runner, kind string, fn func(ctx context.Context, job *Job, p P) (R, error)) error {
	if r == nil || fn == nil {
		return errors.New("taskqueue: Handle needs a Runner and a handler")
	}
	if kind == "" || len(kind) > maxKindLen {
		return fmt.Errorf("taskqueue: kind must be 1 to %d bytes", maxKindLen)
	}
	h := func(ctx context.Context, job *Job, raw json.RawMessage) (json.RawMessage, error) {
		var p P
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, Permanent(fmt.Errorf("taskqueue: payload of %q task does not decode into %T: %w", kind, p, err))
		}
		res, err := fn(ctx, job, p)
		if err != nil {
			return nil, err
		}
		out, err := json.Marshal(res)
		if err != nil {
			return nil, Permanent(fmt.Errorf("taskqueue: result of %q task does not encode: %w", kind, err))
		}
		return out, nil
	}
	r.intake.Lock()
	defer r.intake.Unlock()
	if r.state != stateNew {
		return fmt.Errorf("taskqueue: Handle(%q) after Start", kind)
	}
	old := *r.handlers.Load()
	if _, ok := old[kind]; ok {
		return fmt.Errorf("taskqueue: a handler for %q is already registered", kind)
	}
	m := make(map[string]handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[kind] = h
	r.handlers.Store(&m)
	return nil
}

// Start starts the workers and the retention sweeper. Handlers see ctx's
// values; if ctx ends, running handlers are cancelled and their tasks
// released as by an expired Shutdown, but Shutdown must still be called.
// Starting twice, with no handler registered, or after Shutdown is an
// error (the last ErrClosed).
func (r *Runner) Start(ctx context.Context) error {
	if ctx == nil {
		return errors.New("taskqueue: Start needs a ctx")
	}
	r.intake.Lock()
	defer r.intake.Unlock()
	switch r.state {
	case stateStarted:
		return errors.New("taskqueue: Runner already started")
	case stateClosed:
		return ErrClosed
	}
	hs := *r.handlers.Load()
	if len(hs) == 0 {
		return errors.New("taskqueue: Start with no handler registered")
	}
	for k := range hs {
		r.kinds = append(r.kinds, k)
	}
	slices.Sort(r.kinds)
	r.state = stateStarted
	r.storeCtx = context.WithoutCancel(ctx)
	all, stopAll := context.WithCancelCause(ctx)
	claims, stopClaims := context.WithCancel(all)
	r.stopAll, r.stopClaims = stopAll, stopClaims
	context.AfterFunc(all, func() { r.cancelRunning(context.Cause(all)) })
	slots := make([]runSlot, r.opts.Workers)
	r.mu.Lock() // Cancel reads slots under mu, and may run now
	r.slots = slots
	r.mu.Unlock()
	if cn, ok := r.store.(CancelNotifier); ok {
		r.stopNotify = cn.NotifyCancel(r.cancelLocal)
	}
	r.wg.Add(r.opts.Workers + 1)
	for i := range r.opts.Workers {
		go r.work(i, claims, all)
	}
	go r.sweep(claims)
	if r.opts.PollInterval > 0 {
		r.wg.Add(1)
		go r.poll(claims)
	}
	return nil
}

// Submit validates and stores a task of kind with payload and returns its
// Info at once; a worker runs it when it is due. payload is encoded with
// encoding/json (a json.RawMessage is taken as it is, after a validity
// check, and copied, so the caller may reuse it).
//
// Errors: ErrClosed after Shutdown, ErrUnknownKind for a kind with no
// handler, ErrQueueFull when the store is full (Submit never blocks for
// room), an error for a payload that does not encode or is larger than
// MaxPayloadBytes, for an invalid option, and ctx's error. With UniqueKey,
// a live task holding the key is returned instead of a new one.
//
// Cost: one JSON encoding and one store insert; a few small allocations.
func (r *Runner) Submit(ctx context.Context, kind string, payload any, opts ...SubmitOption) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	if _, ok := (*r.handlers.Load())[kind]; !ok {
		if len(kind) > maxKindLen {
			kind = kind[:maxKindLen] + "…"
		}
		return Info{}, fmt.Errorf("%w: %q", ErrUnknownKind, kind)
	}
	cfg := submitConfig{maxAttempts: r.opts.MaxAttempts}
	if len(opts) > 0 {
		// Options get a copy on the heap, so a Submit without options
		// does not pay for cfg escaping into them.
		c := new(submitConfig)
		*c = cfg
		for _, o := range opts {
			if o == nil {
				return Info{}, errors.New("taskqueue: nil SubmitOption")
			}
			o(c)
		}
		if c.err != nil {
			return Info{}, c.err
		}
		cfg = *c
	}
	var raw json.RawMessage
	if m, ok := payload.(json.RawMessage); ok {
		if !json.Valid(m) {
			return Info{}, errors.New("taskqueue: payload json.RawMessage is not valid JSON")
		}
		raw = bytes.Clone(m) // the caller may reuse its buffer once Submit returns
	} else {
		var err error
		if raw, err = json.Marshal(payload); err != nil {
			return Info{}, fmt.Errorf("taskqueue: payload does not encode as JSON: %w", err)
		}
	}
	if len(raw) > r.opts.MaxPayloadBytes {
		return Info{}, fmt.Errorf("taskqueue: payload of %d bytes exceeds MaxPayloadBytes %d", len(raw), r.opts.MaxPayloadBytes)
	}
	t := Task{
		Info: Info{
			ID:          newID(),
			Kind:        kind,
			MaxAttempts: cfg.maxAttempts,
			UniqueKey:   cfg.uniqueKey,
			RunAt:       cfg.runAt,
		},
		Payload:  raw,
		Timeout:  cfg.timeout,
		Metadata: cfg.metadata,
	}
	if cfg.delay > 0 {
		t.RunAt = time.Now().Add(cfg.delay)
	}
	r.intake.RLock()
	defer r.intake.RUnlock()
	if r.state == stateClosed {
		return Info{}, ErrClosed
	}
	info, _, err := r.store.Insert(ctx, t)
	if err != nil {
		return Info{}, fmt.Errorf("taskqueue: submit %q: %w", kind, err)
	}
	return info, nil
}

// expired reports whether a finished task has outlived Retention.
func (r *Runner) expired(info Info) bool {
	return info.Status.Terminal() && time.Since(info.FinishedAt) >= r.opts.Retention
}

// Get returns the task id. An id that never existed, is malformed, or whose
// task finished Retention or longer ago is ErrNotFound.
func (r *Runner) Get(ctx context.Context, id string) (Info, error) {
	if !validID(id) {
		return Info{}, fmt.Errorf("%w: malformed id", ErrNotFound)
	}
	info, err := r.store.Get(ctx, id)
	if err != nil {
		return Info{}, err
	}
	if r.expired(info) {
		return Info{}, ErrNotFound
	}
	return info, nil
}

// List returns one page of the tasks matching f, newest first (CreatedAt,
// then ID, descending), keyset-paged: pass the page's NextCursor as cursor
// to get the next page, and "" for the first. A cursor is opaque and
// versioned, and strictly checked when it comes back; it encodes a
// position (the last task's CreatedAt and ID), not a secret, so anyone
// holding one learns only that. Tasks past Retention are not
// listed. limit must be between 1 and 1000; f.Status must be zero or valid
// and f.Kind at most 128 bytes; a cursor List did not make is
// ErrInvalidCursor. Pages stay consistent while tasks are added: tasks
// submitted after a page was fetched sort before it (they are newer), so
// they do not appear on the pages that follow it.
func (r *Runner) List(ctx context.Context, f Filter, cursor string, limit int) (pagination.Page[Info], error) {
	switch {
	case limit < 1 || limit > maxListLimit:
		return pagination.Page[Info]{}, fmt.Errorf("taskqueue: limit %d must be between 1 and %d", limit, maxListLimit)
	case f.Status != 0 && !f.Status.Valid():
		return pagination.Page[Info]{}, fmt.Errorf("taskqueue: invalid status filter %d", f.Status)
	case len(f.Kind) > maxKindLen:
		return pagination.Page[Info]{}, fmt.Errorf("taskqueue: kind filter longer than %d bytes", maxKindLen)
	}
	q := ListQuery{Filter: f, Limit: limit + 1, FinishedAfter: time.Now().Add(-r.opts.Retention)}
	if cursor != "" {
		p, err := decodeCursor(cursor)
		if err != nil {
			return pagination.Page[Info]{}, err
		}
		q.After = &p
	}
	rows, err := r.store.List(ctx, q)
	if err != nil {
		return pagination.Page[Info]{}, fmt.Errorf("taskqueue: list: %w", err)
	}
	return pagination.NewPage(rows, limit, func(last Info) (string, error) {
		return encodeCursor(Position{CreatedAt: last.CreatedAt, ID: last.ID}), nil
	})
}

// Cancel cancels the task id. A pending task is canceled at once and never
// runs. A running task's handler ctx is cancelled (cause ErrCanceled) and
// the task ends canceled when the handler returns, whatever it returns;
// Cancel does not wait for that (use Wait). A finished task is left as it
// was and the error wraps ErrFinished; an unknown or expired id is
// ErrNotFound.
func (r *Runner) Cancel(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: malformed id", ErrNotFound)
	}
	info, err := r.store.Cancel(ctx, id)
	switch {
	case errors.Is(err, ErrFinished):
		if r.expired(info) {
			return ErrNotFound
		}
		return fmt.Errorf("%w: task %s is %s", ErrFinished, id, info.Status)
	case err != nil:
		return err
	case info.Status == StatusRunning:
		r.cancelLocal(id)
	default:
		r.finished(info)
	}
	return nil
}

// cancelLocal cancels the handler running id on this Runner, or
// remembers the request for the worker that has claimed it but not yet
// registered it. A task running on another process learns of it through
// Store.Heartbeat, or at once from a store that is a CancelNotifier, which
// calls cancelLocal in every Runner that uses it.
func (r *Runner) cancelLocal(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	found := false
	for _, s := range r.slots {
		if s.cancel != nil && s.id == id {
			s.cancel(ErrCanceled)
			found = true
		}
	}
	if found {
		return
	}
	if len(r.cancelPending) >= max(64, 4*len(r.slots)) {
		for k := range r.cancelPending { // bounded: forget an arbitrary old request
			delete(r.cancelPending, k)
			break
		}
	}
	r.cancelPending[id] = struct{}{}
}

// busy reports whether a handler is running on this Runner.
func (r *Runner) busy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.slots {
		if s.cancel != nil {
			return true
		}
	}
	return false
}

// cancelRunning cancels every handler running on this Runner with cause.
func (r *Runner) cancelRunning(cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.slots {
		if s.cancel != nil {
			s.cancel(cause)
		}
	}
}

// finished publishes a terminal Info, wakes the sweeper, and calls
// OnFinish.
func (r *Runner) finished(info Info) {
	r.hub.publish(info)
	select {
	case r.sweepKick <- struct{}{}:
	default:
	}
	if r.opts.OnFinish == nil {
		return
	}
	defer func() {
		if v := recover(); v != nil {
			r.opts.Logger.Error("taskqueue: OnFinish panicked", "id", info.ID, "panic", v)
		}
	}()
	r.opts.OnFinish(info)
}

// Stats counts the tasks in the store by status (finished tasks not yet
// deleted included).
func (r *Runner) Stats(ctx context.Context) (Stats, error) { return r.store.Stats(ctx) }

// StatsByKind counts the tasks in the store by kind and status, as Stats
// counts them by status, for a store that is a KindCounter (both stores in
// this module are); for another store it returns an error wrapping
// errors.ErrUnsupported.
func (r *Runner) StatsByKind(ctx context.Context) (map[string]Stats, error) {
	kc, ok := r.store.(KindCounter)
	if !ok {
		return nil, fmt.Errorf("taskqueue: %T does not count tasks by kind: %w", r.store, errors.ErrUnsupported)
	}
	return kc.StatsByKind(ctx)
}

// Shutdown stops the Runner: Submit and Start fail with ErrClosed from now
// on, idle workers stop, running handlers may finish until ctx ends, and
// then their ctx is cancelled (cause ErrClosed) and Shutdown waits for them
// to return; their tasks are released back to pending without counting the
// attempt. Open Subscribe channels are closed and Wait returns ErrClosed.
//
// Shutdown returns nil when nothing was left behind, and a *ShutdownError
// when tasks remain pending in the store (with a shared store, the whole
// queue's pending tasks) or handlers were interrupted. A ctx that ends
// (or had ended) while no handler runs cuts nothing short and is no error. A second Shutdown
// returns ErrClosed. A handler that ignores its ctx keeps Shutdown waiting.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.intake.Lock()
	prev := r.state
	r.state = stateClosed
	r.intake.Unlock()
	if prev == stateClosed {
		return ErrClosed
	}
	var ctxErr error
	if prev == stateStarted {
		r.stopClaims()
		done := make(chan struct{})
		go func() { r.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			// An ended ctx is an error only if it cut a handler short: a
			// ctx that had ended before an idle Runner's Shutdown (the
			// usual "<-ctx.Done(); r.Shutdown(ctx)") must not be one just
			// because the idle workers had not yet left.
			before := r.interrupted.Load()
			busy := r.busy()
			r.stopAll(errShutdown)
			<-done
			if busy || r.interrupted.Load() > before {
				ctxErr = ctx.Err()
			}
		}
		r.stopAll(ErrClosed)
		if r.stopNotify != nil {
			r.stopNotify()
		}
	}
	r.hub.closeAll()
	st, err := r.store.Stats(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("taskqueue: shutdown: count pending tasks: %w", err)
	}
	if n := int(r.interrupted.Load()); st.Pending > 0 || n > 0 || ctxErr != nil {
		return &ShutdownError{Pending: st.Pending, Interrupted: n, Err: ctxErr}
	}
	return nil
}

// poll re-reads the tasks that have subscribers every PollInterval and
// publishes what it finds, until claims ends.
func (r *Runner) poll(claims context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	var ids []string
	for {
		select {
		case <-t.C:
		case <-claims.Done():
			return
		}
		ids = r.hub.watched(ids[:0])
		for _, id := range ids {
			info, err := r.store.Get(claims, id)
			switch {
			case err == nil:
				r.hub.publish(info)
			case claims.Err() != nil:
				return
			case !errors.Is(err, ErrNotFound):
				r.opts.Logger.Error("taskqueue: poll", "id", id, "err", err)
			}
		}
	}
}

// sweep deletes tasks past Retention every Retention/4 (clamped to 1s..1m)
// while the store holds finished tasks, until claims ends. It sleeps
// without a timer while there are none, until a task finishes through this
// Runner, so an idle Runner arms no timer at all.
func (r *Runner) sweep(claims context.Context) {
	defer r.wg.Done()
	period := min(max(r.opts.Retention/4, minSweepPeriod), maxSweepPeriod)
	t := time.NewTimer(period) // the first sweep also clears what a durable store kept
	defer t.Stop()
	armed := true
	for {
		select {
		case <-t.C:
			if _, err := r.store.DeleteFinishedBefore(r.storeCtx, time.Now().Add(-r.opts.Retention)); err != nil {
				r.opts.Logger.Error("taskqueue: delete expired tasks", "err", err)
			}
			st, err := r.store.Stats(r.storeCtx)
			armed = err != nil || st.Succeeded+st.Failed+st.Canceled > 0
			if armed {
				t.Reset(period)
			}
		case <-r.sweepKick:
			if !armed {
				t.Reset(period)
				armed = true
			}
		case <-claims.Done():
			return
		}
	}
}
