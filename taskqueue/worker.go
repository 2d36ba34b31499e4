package taskqueue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unicode/utf8"
)

// storeRetryDelay is how long a worker waits after a store error in Claim
// before it tries again.
const storeRetryDelay = 100 * time.Millisecond

// work is one worker: it claims tasks until claims ends. A handler that
// calls runtime.Goexit ends the worker's goroutine; work then starts a
// replacement, so the pool keeps its size.
func (r *Runner) work(i int, claims, all context.Context) {
	returned := false
	defer func() {
		if !returned {
			r.wg.Add(1)
			go r.work(i, claims, all)
		}
		r.wg.Done()
	}()
	// Tasks' ctxs carry all's values but are not registered with it: the
	// Runner cancels the running ones itself when all ends (see Start), so
	// a task costs no registration in a ctx shared by every worker.
	wctx := context.WithoutCancel(all)
	// recorded is closed once the previous attempt's outcome is in the
	// store (see conclude); nil when there is none outstanding.
	var recorded chan struct{}
	defer func() {
		if recorded != nil {
			<-recorded
		}
	}()
	for {
		t, err := r.store.Claim(claims, r.kinds)
		if err != nil {
			if claims.Err() != nil {
				returned = true
				return
			}
			r.opts.Logger.Error("taskqueue: claim", "err", err)
			tm := time.NewTimer(storeRetryDelay)
			select {
			case <-tm.C:
			case <-claims.Done():
				tm.Stop()
				returned = true
				return
			}
			continue
		}
		recorded = r.run(i, &t, wctx, all, recorded)
	}
}

// timeoutError is the cause of a handler's ctx when its attempt times out.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("taskqueue: attempt timed out after %v", e.d)
}

// run runs one claimed attempt and has its outcome recorded; it returns
// what conclude returns. prev is the worker's previous recording, if any.
func (r *Runner) run(i int, t *Task, wctx, all context.Context, prev chan struct{}) chan struct{} {
	h := (*r.handlers.Load())[t.Kind]
	ctx, cancel := context.WithCancelCause(wctx)
	defer cancel(nil)
	timeout := t.Timeout
	if timeout == 0 {
		timeout = r.opts.Timeout
	}
	if timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, timeout, &timeoutError{timeout})
		defer stop()
	}
	job := &Job{r: r, id: t.ID, kind: t.Kind, attempt: t.Attempt, claim: t.ClaimToken, maxAttempts: t.MaxAttempts, progress: t.Progress, metadata: t.Metadata}
	r.mu.Lock()
	r.slots[i] = runSlot{id: t.ID, cancel: cancel}
	if len(r.cancelPending) > 0 {
		if _, ok := r.cancelPending[t.ID]; ok {
			delete(r.cancelPending, t.ID)
			cancel(ErrCanceled)
		}
	}
	r.mu.Unlock()
	if all.Err() != nil { // ended before the slot was there to be cancelled
		cancel(context.Cause(all))
	}
	if !t.LeaseUntil.IsZero() {
		job.heartbeat(time.Until(t.LeaseUntil)/3, cancel)
	}
	if r.hub.active() {
		r.hub.publish(t.Info)
	}

	var (
		res json.RawMessage
		err error
	)
	if h == nil { // a store shared with a Runner that has other kinds
		err = Permanent(fmt.Errorf("%w: %q", ErrUnknownKind, t.Kind))
	} else {
		returned := false
		defer func() {
			if !returned {
				// The goroutine is ending: record in full before it does.
				if done := r.conclude(i, t, job, ctx, all, nil, errGoexit, prev); done != nil {
					<-done
				}
			}
		}()
		res, err = call(ctx, h, job, t.Payload)
		returned = true
	}
	return r.conclude(i, t, job, ctx, all, res, err, prev)
}

// errGoexit fails an attempt whose handler called runtime.Goexit.
var errGoexit = errors.New("taskqueue: handler called runtime.Goexit")

// conclude ends an attempt: it stops the Job, frees the worker's slot,
// and has the outcome recorded in the store, after which subscribers and
// OnFinish are told.
//
// Over any store but a MemoryStore the recording runs on a goroutine of
// its own, so that the worker claims its next task while the store
// records this one: with a store over the network, the round trip that
// ends an attempt and the one that claims the next overlap rather than
// follow each other. conclude then returns a channel closed once the
// recording is done, after waiting for prev, the worker's previous one,
// so a worker has at most one outstanding. A MemoryStore answers at once,
// and a goroutine would cost more than it saves: its recordings are made
// before conclude returns nil.
func (r *Runner) conclude(i int, t *Task, job *Job, ctx, all context.Context, res json.RawMessage, err error, prev chan struct{}) chan struct{} {
	job.end()
	e := r.ending(t, ctx, all, res, err)
	r.mu.Lock()
	r.slots[i] = runSlot{}
	r.mu.Unlock()
	if prev != nil {
		<-prev
	}
	if r.inline {
		r.record(t, e)
		return nil
	}
	done := make(chan struct{})
	tc := *t // t stays on the worker's stack for the inline path
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer close(done)
		r.record(&tc, e)
	}()
	return done
}

// record writes the ending e of attempt t to the store and tells
// subscribers and OnFinish.
func (r *Runner) record(t *Task, e ending) {
	info, serr := r.apply(t, e)
	r.mu.Lock()
	delete(r.cancelPending, t.ID)
	r.mu.Unlock()
	switch {
	case errors.Is(serr, ErrLeaseLost):
		r.opts.Logger.Debug("taskqueue: attempt lost its task", "id", t.ID, "attempt", t.Attempt)
	case serr != nil:
		r.opts.Logger.Error("taskqueue: record attempt", "id", t.ID, "attempt", t.Attempt, "err", serr)
	case info.Status.Terminal():
		r.finished(info)
	default:
		r.hub.publish(info)
	}
}

// panicError is a handler's panic as a failed attempt: the value and the
// stack, as text for Info.Error.
type panicError struct{ msg string }

func (e *panicError) Error() string { return e.msg }

// call runs h, turning a panic into a *panicError. The panic value's text
// is cut to a quarter of MaxErrorMessage so that the stack still fits, and
// the stack is read into a buffer of MaxErrorMessage bytes: a panic deep in
// a recursion costs no more than a shallow one.
func call(ctx context.Context, h handler, job *Job, payload json.RawMessage) (res json.RawMessage, err error) {
	defer func() {
		if v := recover(); v != nil {
			stack := make([]byte, MaxErrorMessage)
			stack = stack[:runtime.Stack(stack, false)]
			value := cut(fmt.Sprint(v), MaxErrorMessage/4)
			res, err = nil, &panicError{fmt.Sprintf("taskqueue: handler panicked: %s\n\n%s", value, stack)}
		}
	}()
	return h(ctx, job, payload)
}

// cut returns s if it is at most limit bytes, else its longest prefix that
// ends on a rune boundary and, with a note of how many bytes were cut,
// fits in limit.
func cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	note := fmt.Sprintf("… [%d bytes cut]", len(s))
	i := max(limit-len(note)-utf8.UTFMax, 0)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + fmt.Sprintf("… [%d bytes cut]", len(s)-i)
}

// endOp is the Store method that ends an attempt.
type endOp uint8

const (
	opFinish endOp = iota
	opRetry
	opRelease
)

// ending is how an attempt ends in the store: decided by ending when the
// handler returns, while its ctx still tells why it ended, and applied by
// apply.
type ending struct {
	op      endOp
	outcome Outcome       // opFinish
	delay   time.Duration // opRetry
	msg     string        // opRetry
}

// ending decides how attempt t ends, from what its handler returned and
// why its ctx ended.
func (r *Runner) ending(t *Task, ctx, all context.Context, res json.RawMessage, err error) ending {
	_, panicked := err.(*panicError) // as call returns it: never wrapped
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, ErrCanceled):
		return ending{op: opFinish, outcome: canceledOutcome}
	case err == nil && len(res) > r.opts.MaxPayloadBytes:
		err = Permanent(fmt.Errorf("taskqueue: result of %d bytes exceeds MaxPayloadBytes %d", len(res), r.opts.MaxPayloadBytes))
	case err == nil:
		return ending{op: opFinish, outcome: Outcome{Status: StatusSucceeded, Result: res}}
	case all.Err() != nil && !panicked:
		// Interrupted by Shutdown (or Start's ctx): not the task's fault.
		return ending{op: opRelease}
	}
	msg := cut(err.Error(), MaxErrorMessage)
	var te *timeoutError
	if errors.As(cause, &te) && !panicked {
		msg = cut(fmt.Sprintf("taskqueue: attempt %d timed out after %v: %s", t.Attempt, te.d, msg), MaxErrorMessage)
	}
	if panicked {
		r.opts.Logger.Warn("taskqueue: handler panicked", "id", t.ID, "kind", t.Kind, "attempt", t.Attempt, "err", msg)
	} else {
		r.opts.Logger.Debug("taskqueue: attempt failed", "id", t.ID, "kind", t.Kind, "attempt", t.Attempt, "err", msg)
	}
	if IsPermanent(err) || t.Attempt >= t.MaxAttempts {
		return ending{op: opFinish, outcome: Outcome{Status: StatusFailed, Error: msg}}
	}
	return ending{op: opRetry, delay: r.backoff(t), msg: msg}
}

// apply writes e to the store.
func (r *Runner) apply(t *Task, e ending) (Info, error) {
	sctx := r.storeCtx
	switch e.op {
	case opRetry:
		return r.store.Retry(sctx, t.ID, t.ClaimToken, e.delay, e.msg)
	case opRelease:
		info, serr := r.store.Release(sctx, t.ID, t.ClaimToken)
		if serr == nil && info.Status == StatusPending { // not when a recorded cancel won
			r.interrupted.Add(1)
		}
		return info, serr
	}
	return r.store.Finish(sctx, t.ID, t.ClaimToken, e.outcome)
}

// backoff returns Options.Backoff's delay after t's attempt, or
// DefaultBackoff's if Options.Backoff panics: the panic is logged, and it
// must not take the worker, or the process, with it.
func (r *Runner) backoff(t *Task) (d time.Duration) {
	defer func() {
		if v := recover(); v != nil {
			r.opts.Logger.Error("taskqueue: Backoff panicked; using DefaultBackoff", "id", t.ID, "attempt", t.Attempt, "panic", v)
			d = DefaultBackoff(t.Attempt)
		}
	}()
	return max(r.opts.Backoff(t.Attempt), 0)
}

// Job is a handler's view of the attempt it is running. Its methods are
// safe for concurrent use, and do nothing harmful after the attempt ends.
type Job struct {
	r           *Runner
	id, kind    string
	attempt     int
	claim       int64
	maxAttempts int
	metadata    map[string]string // shared with the store's Task: read only

	mu       sync.Mutex
	progress Progress
	written  time.Time // when progress was last written to the store
	dirty    bool      // progress holds a value not yet written
	flushing *time.Timer
	flushSeq uint64 // which arming of flushing is current
	beat     *time.Timer
	ended    bool

	// timers counts armed timers whose callback has not returned: one per
	// arming, done when the callback returns or Stop prevents it. end
	// waits for it, so no callback outlives the attempt.
	timers   sync.WaitGroup
	stopBeat context.CancelFunc // ends the ctx of a heartbeat in the store
}

// ID returns the task's id.
func (j *Job) ID() string { return j.id }

// Kind returns the task's kind.
func (j *Job) Kind() string { return j.kind }

// Attempt returns this attempt's number, 1 for the first.
func (j *Job) Attempt() int { return j.attempt }

// MaxAttempts returns how many attempts the task may have in all.
func (j *Job) MaxAttempts() int { return j.maxAttempts }

// Progress records how far the task has got: percent between 0 and 100
// and a message of at most MaxProgressMessage bytes, else an error and
// nothing is recorded. Calls are cheap enough to make per item: the first
// is written to the store at once, later ones at most once per
// Options.ProgressInterval, keeping only the latest value in between (it is
// written when the interval is up, or when the attempt ends). Each write is
// published to Subscribe and Wait. Progress after the attempt has ended is
// an error.
func (j *Job) Progress(percent int, message string) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("taskqueue: progress %d%% is outside 0..100", percent)
	}
	if len(message) > MaxProgressMessage {
		return fmt.Errorf("taskqueue: progress message of %d bytes exceeds %d", len(message), MaxProgressMessage)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.ended {
		return errors.New("taskqueue: progress after the attempt ended")
	}
	j.progress = Progress{Percent: percent, Message: message}
	j.dirty = true
	wait := j.r.opts.ProgressInterval - time.Since(j.written)
	if j.written.IsZero() || wait <= 0 {
		return j.write()
	}
	if j.flushing == nil {
		j.timers.Add(1)
		j.flushSeq++
		seq := j.flushSeq
		j.flushing = time.AfterFunc(wait, func() { j.flush(seq) })
	}
	return nil
}

// write stores and publishes the latest progress. j.mu is held.
func (j *Job) write() error {
	j.dirty, j.written = false, time.Now()
	j.stopFlush()
	err := j.r.store.Progress(j.r.storeCtx, j.id, j.claim, j.progress)
	if err != nil {
		return fmt.Errorf("taskqueue: record progress: %w", err)
	}
	if j.r.hub.active() {
		if info, err := j.r.store.Get(j.r.storeCtx, j.id); err == nil {
			j.r.hub.publish(info)
		}
	}
	return nil
}

// stopFlush disarms the flush timer. j.mu is held.
func (j *Job) stopFlush() {
	if j.flushing != nil {
		if j.flushing.Stop() {
			j.timers.Done()
		}
		j.flushing = nil
	}
}

// flush writes coalesced progress when the interval of arming seq is up.
func (j *Job) flush(seq uint64) {
	defer j.timers.Done()
	j.mu.Lock()
	defer j.mu.Unlock()
	if seq != j.flushSeq {
		return // stopped too late, and a later arming is current
	}
	j.flushing = nil // it fired: write must not Stop it and count it twice
	if j.ended || !j.dirty {
		return
	}
	if err := j.write(); err != nil {
		j.r.opts.Logger.Debug("taskqueue: progress", "id", j.id, "err", err)
	}
}

// end flushes pending progress, stops the attempt's timers, cancels a
// heartbeat that is in the store, and waits for callbacks already running.
func (j *Job) end() {
	j.mu.Lock()
	if j.dirty {
		if err := j.write(); err != nil {
			j.r.opts.Logger.Debug("taskqueue: progress", "id", j.id, "err", err)
		}
	}
	j.ended = true
	j.stopFlush()
	if j.beat != nil {
		if j.beat.Stop() {
			j.timers.Done()
		}
		j.stopBeat()
	}
	j.mu.Unlock()
	j.timers.Wait()
}

// heartbeat renews the attempt's lease every period until the attempt
// ends, and cancels the handler when the task's cancellation is requested
// or the lease is lost.
func (j *Job) heartbeat(period time.Duration, cancel context.CancelCauseFunc) {
	period = max(period, 10*time.Millisecond)
	ctx, stop := context.WithCancel(j.r.storeCtx)
	beat := func() {
		defer j.timers.Done()
		cancelRequested, err := j.r.store.Heartbeat(ctx, j.id, j.claim)
		switch {
		case ctx.Err() != nil: // the attempt ended
			return
		case errors.Is(err, ErrLeaseLost):
			cancel(ErrLeaseLost)
			return
		case err != nil:
			j.r.opts.Logger.Error("taskqueue: heartbeat", "id", j.id, "err", err)
		case cancelRequested:
			cancel(ErrCanceled)
			return
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		if !j.ended {
			j.timers.Add(1)
			j.beat.Reset(period)
		}
	}
	j.mu.Lock()
	j.stopBeat = stop
	j.timers.Add(1)
	j.beat = time.AfterFunc(period, beat)
	j.mu.Unlock()
}
