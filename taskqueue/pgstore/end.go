package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
)

// maxEndBatch bounds how many attempt endings one statement carries.
const maxEndBatch = 1000

// Attempt endings (Finish, Retry, Release) are batched the way a database
// groups commits: a caller that finds no statement in flight runs one for
// every ending queued so far, and the callers that arrive meanwhile queue
// for the next. No goroutine is started for it; under load one statement
// ends many attempts, and alone a caller pays one round trip.

// endReq is one attempt ending: what the attempt's claim asks for, and
// what the store answered.
type endReq struct {
	id      string
	claim   int64
	status  string // the task's status after the ending, unless a cancel was requested
	result  []byte
	errMsg  string
	runAt   time.Time // when a pending task is due
	release bool      // give the attempt back rather than spend it

	info     taskqueue.Info
	err      error
	done     chan struct{} // receives once info and err are set, or to hand over the lead
	lead     bool          // this caller runs the next batches (set under endBatcher.mu)
	taken    bool          // a batch carries this request (set under endBatcher.mu)
	answered bool          // done has been sent its answer (by the batch's leader)
}

type endBatcher struct {
	s     *Store
	mu    sync.Mutex
	queue []*endReq
	busy  bool
}

// do queues req and returns once a batch has carried it. If ctx ends
// while req still waits in the queue, do takes it out and returns ctx's
// error; once a batch carries it, the ending is applied whatever ctx does.
func (b *endBatcher) do(ctx context.Context, req *endReq) (taskqueue.Info, error) {
	req.done = make(chan struct{}, 1)
	b.mu.Lock()
	b.queue = append(b.queue, req)
	if b.busy {
		b.mu.Unlock()
		select {
		case <-req.done:
		case <-ctx.Done():
			b.mu.Lock()
			if !req.taken && !req.lead {
				b.queue = slices.DeleteFunc(b.queue, func(r *endReq) bool { return r == req })
				b.mu.Unlock()
				return taskqueue.Info{}, ctx.Err()
			}
			lead := req.lead
			b.mu.Unlock()
			if !lead {
				return taskqueue.Info{}, ctx.Err()
			}
			<-req.done // the queue was handed to this caller: it must run it
		}
		if !req.lead {
			return req.info, req.err
		}
		b.mu.Lock()
	}
	b.busy = true
	var p any
	for !req.finished() {
		n := min(len(b.queue), maxEndBatch)
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		for _, r := range batch {
			r.taken = true
		}
		b.mu.Unlock()
		if p = b.s.endBatchSafely(ctx, batch); p != nil {
			b.mu.Lock()
			if !req.finished() { // a later batch was to carry it
				b.queue = slices.DeleteFunc(b.queue, func(r *endReq) bool { return r == req })
				req.err = fmt.Errorf("pgstore: end attempt: panic: %v", p)
			}
			break
		}
		b.mu.Lock()
	}
	// Hand the queue on, so that this caller returns now.
	if len(b.queue) > 0 {
		next := b.queue[0]
		next.lead = true
		next.done <- struct{}{}
	} else {
		b.busy = false
		b.queue = nil
	}
	b.mu.Unlock()
	if p != nil {
		panic(p) // the batch is answered and the lead handed on: see endBatchSafely
	}
	return req.info, req.err
}

// endBatchSafely runs endBatch, and returns what it panicked with (in a
// driver's or a tracer's hook, say) after answering every request of the
// batch that it had not answered with an error, so that no caller waits
// for an answer that will not come. The endings may or may not have been
// applied; a task left running is rescued when its lease expires.
func (s *Store) endBatchSafely(ctx context.Context, batch []*endReq) (p any) {
	defer func() {
		if p = recover(); p == nil {
			return
		}
		for _, r := range batch {
			if r.answered {
				continue
			}
			if !r.finished() {
				r.err = fmt.Errorf("pgstore: end attempt: panic: %v", p)
			}
			if !r.lead {
				r.answered = true
				r.done <- struct{}{}
			}
		}
	}()
	s.endBatch(ctx, batch)
	return nil
}

func (r *endReq) finished() bool { return r.info.ID != "" || r.err != nil }

// endBatch ends the attempts of batch in one statement and answers each
// request.
func (s *Store) endBatch(ctx context.Context, batch []*endReq) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout())
	defer cancel()
	n := len(batch)
	ids, claims, statuses := make([]string, n), make([]int64, n), make([]string, n)
	results, errs := make([][]byte, n), make([]string, n)
	runAts, releases := make([]time.Time, n), make([]bool, n)
	for i, r := range batch {
		ids[i], claims[i], statuses[i] = r.id, r.claim, r.status
		results[i], errs[i] = r.result, pgText(r.errMsg)
		runAts[i], releases[i] = r.runAt, r.release
	}
	now := floorMicro(time.Now())
	type key struct {
		id    string
		claim int64
	}
	got := make(map[key]taskqueue.Info, n)
	var requeued []string
	err := queryRows(qctx, s.q, func(r rows) error {
		var claim int64
		var notified bool
		info, err := scanInfo(r, &claim, &notified)
		if err != nil {
			return err
		}
		got[key{info.ID, claim}] = info
		if info.Status == taskqueue.StatusPending {
			requeued = append(requeued, info.Kind)
		}
		return nil
	}, s.sql.end, ids, claims, statuses, results, errs, runAts, releases, now, taskqueue.ErrCanceled.Error(), s.chann, s.wakePrefix)
	if err != nil {
		for _, r := range batch {
			r.err = fmt.Errorf("pgstore: end attempt: %w", err)
		}
	} else {
		var missing []string
		for _, r := range batch {
			k := key{r.id, r.claim}
			if info, ok := got[k]; ok {
				r.info = info
				delete(got, k) // a duplicate request for one claim gets ErrLeaseLost
			} else {
				missing = append(missing, r.id)
			}
		}
		if len(missing) > 0 {
			s.answerMissing(qctx, batch, missing)
		}
	}
	for _, kind := range requeued {
		s.wake(kind)
	}
	for _, r := range batch {
		if r.lead {
			continue // the caller leads: it reads its answer itself
		}
		r.answered = true
		r.done <- struct{}{}
	}
}

// answerMissing tells the requests that changed no row whether their task
// exists (ErrLeaseLost) or not (ErrNotFound).
func (s *Store) answerMissing(ctx context.Context, batch []*endReq, missing []string) {
	exists := map[string]bool{}
	err := queryRows(ctx, s.q, func(r rows) error {
		var id string
		if err := r.Scan(&id); err != nil {
			return err
		}
		exists[id] = true
		return nil
	}, s.sql.exists, missing)
	for _, r := range batch {
		if r.finished() {
			continue
		}
		switch {
		case err != nil:
			r.err = fmt.Errorf("pgstore: end attempt: %w", err)
		case exists[r.id]:
			r.err = taskqueue.ErrLeaseLost
		default:
			r.err = taskqueue.ErrNotFound
		}
	}
}

// Finish implements taskqueue.Store. Error texts are stored whole, with
// bytes a text column cannot hold (NUL, invalid UTF-8) as '?'.
func (s *Store) Finish(ctx context.Context, id string, claim int64, o taskqueue.Outcome) (taskqueue.Info, error) {
	if !o.Status.Terminal() {
		return taskqueue.Info{}, errors.New("pgstore: Finish needs a terminal status")
	}
	return s.ends.do(ctx, &endReq{id: id, claim: claim, status: o.Status.String(), result: o.Result, errMsg: o.Error})
}

// Retry implements taskqueue.Store.
func (s *Store) Retry(ctx context.Context, id string, claim int64, delay time.Duration, errMsg string) (taskqueue.Info, error) {
	if delay < 0 {
		return taskqueue.Info{}, errors.New("pgstore: negative retry delay")
	}
	runAt := ceilMicro(time.Now().Add(delay))
	return s.ends.do(ctx, &endReq{id: id, claim: claim, status: "pending", errMsg: errMsg, runAt: runAt})
}

// Release implements taskqueue.Store.
func (s *Store) Release(ctx context.Context, id string, claim int64) (taskqueue.Info, error) {
	return s.ends.do(ctx, &endReq{id: id, claim: claim, status: "pending", runAt: floorMicro(time.Now()), release: true})
}
