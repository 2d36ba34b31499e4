package taskqueue

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultQueueSize is the QueueSize used when Options.QueueSize and
// MemoryOptions.QueueSize are zero.
const DefaultQueueSize = 1024

// maxQueueSize bounds QueueSize so a typo cannot reserve absurd memory.
const maxQueueSize = 1 << 24

// MemoryOptions configures NewMemoryStore. The zero value means defaults.
type MemoryOptions struct {
	// QueueSize is the most tasks that may wait to run, due now or later.
	// Insert beyond it is ErrQueueFull. Retries and released tasks are never
	// refused, so up to QueueSize plus the number of workers may wait.
	// Defaults to DefaultQueueSize; at most 1<<24.
	QueueSize int
	// MaxFinished is the most finished tasks kept. Finished tasks are kept
	// for the Runner's Retention, so without a bound a stream of quick
	// tasks would hold rate × Retention of them; past MaxFinished the
	// oldest finished task is dropped at once, and its id is ErrNotFound
	// before its Retention is up. A finished task costs about 400 bytes
	// plus its error text and result. Defaults to DefaultMaxFinished; at
	// most 1<<30.
	MaxFinished int
}

// DefaultMaxFinished is the MaxFinished used when MemoryOptions.MaxFinished
// is zero.
const DefaultMaxFinished = 1 << 18

const maxMaxFinished = 1 << 30

// MemoryStore is the in-process Store: fast, bounded, and gone with the
// process. It is the Store a Runner uses when Options.Store is nil.
//
// Costs: Insert, Claim, Cancel and the per-claim updates are O(log n) or
// better (n the tasks held); List scans from its position and skips tasks
// that do not match the filter; DeleteFinishedBefore is O(deleted). Memory is
// bounded by QueueSize waiting tasks plus the finished tasks kept until they
// are deleted, at most MaxFinished; the maps and queues are rebuilt smaller when most of their
// entries have been deleted, so memory returns to its baseline after a burst.
//
// Several Runners in one process may share a MemoryStore, each running its
// own kinds. Its claims carry no lease, so no heartbeat carries cancel
// requests between them: Cancel made through one Runner of a task running
// on another does not interrupt the handler, but the task still ends
// canceled when the handler returns.
//
// A MemoryStore starts no goroutines and needs no Close.
type MemoryStore struct {
	mu       sync.Mutex
	capacity int
	maxDone  int // MaxFinished
	tasks    map[string]*memTask
	peak     int                    // len(tasks) high-water mark since the map was last rebuilt
	running  map[string]*memTask    // the running tasks: a small map, quick to search
	unique   map[uniqueKey]*memTask // live tasks by kind and UniqueKey
	upeak    int
	ready    deque // due tasks, first come first served; may hold dead entries
	live     int   // pending tasks in ready
	delayed  delayHeap
	order    []*memTask // every task, ascending (CreatedAt, ID); may hold deleted entries
	dead     int        // deleted entries in order
	finished deque      // finished tasks in the order they finished
	waiters  []*waiter
	spare    []*waiter // reused by Claim; a store's channels stay its own
	counts   [StatusCanceled + 1]int
	byKind   map[string]*[StatusCanceled + 1]int // counts per kind; kinds with no task are removed
	seq      uint64
}

var (
	_ Store       = (*MemoryStore)(nil)
	_ KindCounter = (*MemoryStore)(nil)
)

type memTask struct {
	Task
	seq             uint64
	index           int // in delayed, or -1
	cancelRequested bool
	deleted         bool
}

// info returns a snapshot of the task's Info that shares no bytes with the
// store: a caller may change its Result without changing the task.
func (mt *memTask) info() Info {
	in := mt.Info
	if in.Result != nil {
		in.Result = bytes.Clone(in.Result)
	}
	return in
}

// uniqueKey scopes a UniqueKey to its kind.
type uniqueKey struct{ kind, key string }

type waiter struct {
	ch       chan struct{}
	kinds    []string
	signaled bool
}

// NewMemoryStore returns an empty in-memory store. A negative or too large
// QueueSize is an error.
func NewMemoryStore(opts MemoryOptions) (*MemoryStore, error) {
	if opts.QueueSize < 0 || opts.QueueSize > maxQueueSize {
		return nil, errors.New("taskqueue: QueueSize must be between 0 and 1<<24")
	}
	if opts.MaxFinished < 0 || opts.MaxFinished > maxMaxFinished {
		return nil, errors.New("taskqueue: MaxFinished must be between 0 and 1<<30")
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.MaxFinished == 0 {
		opts.MaxFinished = DefaultMaxFinished
	}
	return &MemoryStore{
		capacity: opts.QueueSize,
		maxDone:  opts.MaxFinished,
		tasks:    make(map[string]*memTask),
		running:  make(map[string]*memTask),
		unique:   make(map[uniqueKey]*memTask),
		byKind:   make(map[string]*[StatusCanceled + 1]int),
	}, nil
}

// now returns the store's clock without its monotonic reading, so stored
// times compare by the same wall clock a cursor carries.
func now() time.Time { return time.Now().Round(0) }

func (s *MemoryStore) lookup(id string) (*memTask, error) {
	mt := s.tasks[id]
	if mt == nil {
		return nil, ErrNotFound
	}
	return mt, nil
}

func (s *MemoryStore) held(id string, claim int64) (*memTask, error) {
	mt := s.running[id]
	if mt == nil {
		if _, err := s.lookup(id); err != nil {
			return nil, err
		}
		return nil, ErrLeaseLost
	}
	if mt.ClaimToken != claim {
		return nil, ErrLeaseLost
	}
	return mt, nil
}

func kindIn(kind string, kinds []string) bool {
	return kinds == nil || slices.Contains(kinds, kind)
}

func (s *MemoryStore) setStatus(mt *memTask, st Status) {
	switch {
	case st == StatusRunning:
		s.running[mt.ID] = mt
	case mt.Status == StatusRunning:
		delete(s.running, mt.ID)
	}
	s.count(mt, mt.Status, -1)
	s.count(mt, st, 1)
	mt.Status = st
	mt.Version++
}

// count adds delta to the counts of mt's kind in status st, and to the
// totals.
func (s *MemoryStore) count(mt *memTask, st Status, delta int) {
	s.counts[st] += delta
	c := s.byKind[mt.Kind]
	if c == nil {
		c = new([StatusCanceled + 1]int)
		s.byKind[mt.Kind] = c
	}
	c[st] += delta
	if *c == ([StatusCanceled + 1]int{}) {
		delete(s.byKind, mt.Kind)
	}
}

// Insert implements Store.
func (s *MemoryStore) Insert(ctx context.Context, t Task) (Info, bool, error) {
	if t.ID == "" || t.Kind == "" || t.MaxAttempts < 1 {
		return Info{}, false, errors.New("taskqueue: Insert needs a task with ID, Kind and MaxAttempts")
	}
	if err := ctx.Err(); err != nil {
		return Info{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.UniqueKey != "" {
		if mt := s.unique[uniqueKey{t.Kind, t.UniqueKey}]; mt != nil {
			return mt.info(), false, nil
		}
	}
	if s.counts[StatusPending] >= s.capacity {
		return Info{}, false, ErrQueueFull
	}
	if s.tasks[t.ID] != nil {
		return Info{}, false, errors.New("taskqueue: duplicate task id")
	}
	n := now()
	s.seq++
	mt := &memTask{Task: t, seq: s.seq, index: -1}
	mt.Status = StatusPending
	mt.Attempt = 0
	mt.CreatedAt = n
	mt.StartedAt, mt.FinishedAt = time.Time{}, time.Time{}
	mt.Result, mt.Error, mt.Progress = nil, "", Progress{}
	mt.RunAt = mt.RunAt.Round(0)
	mt.ClaimToken = 0
	mt.Version = 1
	s.count(mt, StatusPending, 1)
	s.tasks[mt.ID] = mt
	s.peak = max(s.peak, len(s.tasks))
	if mt.UniqueKey != "" {
		s.unique[uniqueKey{mt.Kind, mt.UniqueKey}] = mt
		s.upeak = max(s.upeak, len(s.unique))
	}
	if k := len(s.order); k == 0 || compareTask(s.order[k-1], mt) < 0 {
		s.order = append(s.order, mt)
	} else {
		i, _ := slices.BinarySearchFunc(s.order, mt, compareTask)
		s.order = slices.Insert(s.order, i, mt)
	}
	s.schedule(mt, n)
	return mt.info(), true, nil
}

func compareTask(a, b *memTask) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
}

// schedule puts a pending task in the ready queue or the delay heap and
// wakes a worker that can act on it.
func (s *MemoryStore) schedule(mt *memTask, n time.Time) {
	if mt.RunAt.IsZero() || !mt.RunAt.After(n) {
		mt.RunAt = n
		s.ready.push(mt)
		s.live++
		s.wake(mt.Kind)
		return
	}
	heap.Push(&s.delayed, mt)
	if mt.index == 0 {
		// A new earliest due time: some waiter must re-arm its timer.
		s.wake("")
	}
}

// wake signals one waiting Claim that accepts kind ("" accepts any waiter)
// and reports whether there was one.
func (s *MemoryStore) wake(kind string) bool {
	for i, w := range s.waiters {
		if kind == "" || kindIn(kind, w.kinds) {
			s.waiters = slices.Delete(s.waiters, i, i+1)
			w.signaled = true
			w.ch <- struct{}{} // cap 1, and only ever sent to while registered
			return true
		}
	}
	return false
}

// promote moves due delayed tasks to the ready queue, for a Claim of
// kinds. The first of them that Claim can run is left to it; each of the
// others wakes a waiter of its own kind, since only one waiter re-armed
// its timer for them and it may run other kinds.
func (s *MemoryStore) promote(n time.Time, kinds []string) {
	mine := false
	for len(s.delayed) > 0 && !s.delayed[0].RunAt.After(n) {
		mt := heap.Pop(&s.delayed).(*memTask)
		s.ready.push(mt)
		s.live++
		if !mine && kindIn(mt.Kind, kinds) {
			mine = true
			continue
		}
		s.wake(mt.Kind)
	}
}

// popReady removes and returns the first ready pending task of kinds.
func (s *MemoryStore) popReady(kinds []string) *memTask {
	for s.ready.len() > 0 {
		mt := s.ready.front()
		if mt.Status != StatusPending || mt.index >= 0 {
			s.ready.popFront() // cancelled while waiting
			continue
		}
		if kindIn(mt.Kind, kinds) {
			s.ready.popFront()
			s.live--
			return mt
		}
		break
	}
	// Slow path: the head is of a kind this caller does not run.
	for i := 1; i < s.ready.len(); i++ {
		mt := s.ready.at(i)
		if mt.Status == StatusPending && mt.index < 0 && kindIn(mt.Kind, kinds) {
			s.ready.removeAt(i)
			s.live--
			return mt
		}
	}
	return nil
}

// Claim implements Store. Waiting costs no goroutine: the caller blocks on
// a channel until an Insert, Retry, Release or due time hands it work.
func (s *MemoryStore) Claim(ctx context.Context, kinds []string) (Task, error) {
	if kinds != nil && len(kinds) == 0 {
		return Task{}, errors.New("taskqueue: Claim needs at least one kind, or nil for any")
	}
	var (
		w     *waiter
		timer *time.Timer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if w != nil {
			s.mu.Lock()
			s.spare = append(s.spare, w)
			s.mu.Unlock()
		}
	}()
	for {
		s.mu.Lock()
		if err := ctx.Err(); err != nil {
			s.handOn(true)
			s.mu.Unlock()
			return Task{}, err
		}
		n := now()
		s.promote(n, kinds)
		if mt := s.popReady(kinds); mt != nil {
			mt.Attempt++
			mt.ClaimToken++
			mt.StartedAt = n
			s.setStatus(mt, StatusRunning)
			t := mt.Task
			s.handOn(false)
			s.mu.Unlock()
			return t, nil
		}
		var wait time.Duration = -1
		if len(s.delayed) > 0 {
			wait = s.delayed[0].RunAt.Sub(n)
		}
		if w == nil {
			if k := len(s.spare); k > 0 {
				w, s.spare = s.spare[k-1], s.spare[:k-1]
			} else {
				w = &waiter{ch: make(chan struct{}, 1)}
			}
		}
		w.kinds, w.signaled = kinds, false
		s.waiters = append(s.waiters, w)
		s.mu.Unlock()

		var tc <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-w.ch:
		case <-tc:
		case <-ctx.Done():
		}
		s.mu.Lock()
		if !w.signaled {
			if i := slices.Index(s.waiters, w); i >= 0 {
				s.waiters = slices.Delete(s.waiters, i, i+1)
			}
		}
		select { // a signal sent while we left for another reason
		case <-w.ch:
		default:
		}
		w.kinds = nil
		s.mu.Unlock()
		if timer != nil {
			timer.Stop()
		}
	}
}

// handOn passes the wake-up on when work remains: after a claim, to a
// waiter that can take another due task (a burst of promoted tasks); when
// a caller leaves, also to one that re-arms the timer for delayed tasks,
// so a signal consumed by a leaving caller is never lost.
func (s *MemoryStore) handOn(leaving bool) {
	if len(s.waiters) == 0 {
		return
	}
	if leaving && len(s.delayed) > 0 {
		s.wake("")
	}
	// Look a little way into the queue only: the head is almost always
	// claimable, and each Insert wakes a waiter for its own kind anyway.
	for i := 0; i < min(s.ready.len(), 64) && s.live > 0 && len(s.waiters) > 0; i++ {
		if mt := s.ready.at(i); mt.Status == StatusPending && mt.index < 0 && s.wake(mt.Kind) {
			return
		}
	}
}

// Heartbeat implements Store. Claims in a MemoryStore carry no lease, so it
// only reports a cancel request.
func (s *MemoryStore) Heartbeat(ctx context.Context, id string, claim int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, err := s.held(id, claim)
	if err != nil {
		return false, err
	}
	return mt.cancelRequested, nil
}

// Progress implements Store.
func (s *MemoryStore) Progress(ctx context.Context, id string, claim int64, p Progress) error {
	if p.Percent < 0 || p.Percent > 100 || len(p.Message) > MaxProgressMessage {
		return errors.New("taskqueue: progress outside 0..100 or message too long")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, err := s.held(id, claim)
	if err != nil {
		return err
	}
	mt.Progress = p
	mt.Version++
	return nil
}

// Finish implements Store.
func (s *MemoryStore) Finish(ctx context.Context, id string, claim int64, o Outcome) (Info, error) {
	if !o.Status.Terminal() {
		return Info{}, errors.New("taskqueue: Finish needs a terminal status")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, err := s.held(id, claim)
	if err != nil {
		return Info{}, err
	}
	if mt.cancelRequested {
		o = canceledOutcome
	}
	s.finish(mt, o, now())
	return mt.info(), nil
}

// canceledOutcome is how a held task ends once a cancel was requested for
// it, whatever its handler reported: the request wins.
var canceledOutcome = Outcome{Status: StatusCanceled, Error: ErrCanceled.Error()}

// requeue puts a held task back to pending, due at runAt, or ends it
// canceled when a cancel was requested while it ran. Called with mu held.
func (s *MemoryStore) requeue(mt *memTask, n, runAt time.Time) {
	if mt.cancelRequested {
		s.finish(mt, canceledOutcome, n)
		return
	}
	s.setStatus(mt, StatusPending)
	mt.RunAt = runAt
	s.schedule(mt, n)
}

func (s *MemoryStore) finish(mt *memTask, o Outcome, n time.Time) {
	s.setStatus(mt, o.Status)
	mt.Result, mt.Error, mt.FinishedAt = o.Result, o.Error, n
	mt.Payload, mt.Metadata = nil, nil // no longer needed, and finished tasks are kept a while
	if k := (uniqueKey{mt.Kind, mt.UniqueKey}); mt.UniqueKey != "" && s.unique[k] == mt {
		delete(s.unique, k)
	}
	s.finished.push(mt)
	if s.finished.len() > s.maxDone {
		s.dropOldestFinished()
		s.shrink()
	}
}

// dropOldestFinished deletes the task that finished first.
func (s *MemoryStore) dropOldestFinished() {
	mt := s.finished.front()
	s.finished.popFront()
	delete(s.tasks, mt.ID)
	s.count(mt, mt.Status, -1)
	mt.deleted = true
	s.dead++
}

// Retry implements Store.
func (s *MemoryStore) Retry(ctx context.Context, id string, claim int64, delay time.Duration, errMsg string) (Info, error) {
	if delay < 0 {
		return Info{}, errors.New("taskqueue: negative retry delay")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, err := s.held(id, claim)
	if err != nil {
		return Info{}, err
	}
	n := now()
	if !mt.cancelRequested {
		mt.Error = errMsg
	}
	s.requeue(mt, n, n.Add(delay))
	return mt.info(), nil
}

// Release implements Store.
func (s *MemoryStore) Release(ctx context.Context, id string, claim int64) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, err := s.held(id, claim)
	if err != nil {
		return Info{}, err
	}
	n := now()
	if !mt.cancelRequested {
		mt.Attempt-- // a released attempt is given back, not spent
	}
	s.requeue(mt, n, n)
	return mt.info(), nil
}

// Cancel implements Store.
func (s *MemoryStore) Cancel(ctx context.Context, id string) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, err := s.lookup(id)
	if err != nil {
		return Info{}, err
	}
	switch {
	case mt.Status.Terminal():
		return mt.info(), ErrFinished
	case mt.Status == StatusRunning:
		mt.cancelRequested = true
	default: // pending
		if mt.index >= 0 {
			heap.Remove(&s.delayed, mt.index)
		} else {
			s.live-- // its ready entry is skipped when reached
			if s.ready.len() > 2*s.live+64 {
				s.ready.compact(func(mt *memTask) bool { return mt.Status == StatusPending })
			}
		}
		s.finish(mt, canceledOutcome, now())
	}
	return mt.info(), nil
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, id string) (Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mt, err := s.lookup(id)
	if err != nil {
		return Info{}, err
	}
	return mt.info(), nil
}

// List implements Store.
func (s *MemoryStore) List(ctx context.Context, q ListQuery) ([]Info, error) {
	if q.Limit < 1 {
		return nil, errors.New("taskqueue: List needs a limit of at least 1")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i := len(s.order)
	if q.After != nil {
		i, _ = slices.BinarySearchFunc(s.order, q.After, func(mt *memTask, p *Position) int {
			return cmp.Or(mt.CreatedAt.Compare(p.CreatedAt), strings.Compare(mt.ID, p.ID))
		})
	}
	out := make([]Info, 0, min(q.Limit, 64))
	for i--; i >= 0 && len(out) < q.Limit; i-- {
		mt := s.order[i]
		if mt.deleted ||
			(q.Status != 0 && mt.Status != q.Status) ||
			(q.Kind != "" && mt.Kind != q.Kind) ||
			(mt.Status.Terminal() && !q.FinishedAfter.IsZero() && !mt.FinishedAt.After(q.FinishedAfter)) {
			continue
		}
		out = append(out, mt.info())
	}
	return out, nil
}

// DeleteFinishedBefore implements Store.
func (s *MemoryStore) DeleteFinishedBefore(ctx context.Context, cutoff time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	deleted := 0
	for s.finished.len() > 0 {
		mt := s.finished.front()
		if !mt.FinishedAt.Before(cutoff) {
			break
		}
		s.dropOldestFinished()
		deleted++
	}
	if deleted > 0 {
		s.shrink()
	}
	return deleted, nil
}

// shrink rebuilds the structures that no longer give memory back by
// themselves, once most of their entries are gone.
func (s *MemoryStore) shrink() {
	if s.dead > 64 && s.dead > len(s.order)/2 {
		order := make([]*memTask, 0, len(s.order)-s.dead)
		for _, mt := range s.order {
			if !mt.deleted {
				order = append(order, mt)
			}
		}
		s.order, s.dead = order, 0
	}
	if s.peak > 1024 && len(s.tasks) < s.peak/4 {
		s.tasks = maps2(s.tasks)
		s.peak = len(s.tasks)
	}
	if s.upeak > 1024 && len(s.unique) < s.upeak/4 {
		s.unique = maps2(s.unique)
		s.upeak = len(s.unique)
	}
	s.finished.fit()
	s.ready.fit()
	if cap(s.delayed) > 1024 && len(s.delayed) < cap(s.delayed)/4 {
		s.delayed = slices.Clone(s.delayed)
	}
}

func maps2[K comparable](m map[K]*memTask) map[K]*memTask {
	out := make(map[K]*memTask, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Stats implements Store.
func (s *MemoryStore) Stats(ctx context.Context) (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Pending:   s.counts[StatusPending],
		Running:   s.counts[StatusRunning],
		Succeeded: s.counts[StatusSucceeded],
		Failed:    s.counts[StatusFailed],
		Canceled:  s.counts[StatusCanceled],
	}, nil
}

// StatsByKind implements KindCounter.
func (s *MemoryStore) StatsByKind(ctx context.Context) (map[string]Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Stats, len(s.byKind))
	for kind, c := range s.byKind {
		out[kind] = Stats{Pending: c[StatusPending], Running: c[StatusRunning],
			Succeeded: c[StatusSucceeded], Failed: c[StatusFailed], Canceled: c[StatusCanceled]}
	}
	return out, nil
}
