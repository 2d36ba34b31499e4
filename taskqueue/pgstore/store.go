package pgstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/txn"
)

// ErrClosed is returned by Claim after Close. The store's other methods
// still work after Close: they run on the *sql.DB, which Close leaves open.
var ErrClosed = errors.New("pgstore: store closed")

// Store is a taskqueue.Store in Postgres: every process whose Runner uses a
// Store on the same schema shares one queue. Create it with New and stop
// its background work with Close once the Runners using it have shut down.
// All methods are safe for concurrent use.
type Store struct {
	db    *sql.DB
	q     querier // the store's own statements: Pool when set, else db
	opts  Options
	sql   statements
	chann string // the NOTIFY channel

	// instance tells this store's notifications from other instances';
	// the prefixes start the payloads it sends (see listen.go).
	instance, wakePrefix, cancelPrefix string
	listening                          atomic.Bool

	mu     sync.Mutex // guards groups, spare and closed
	groups map[string]*claimGroup
	spare  []*claimWaiter
	closed bool

	watchMu  sync.RWMutex // guards watchers, and is held while they are called
	watchers map[int]func(id string)
	watchID  int

	ends endBatcher

	stop context.CancelFunc
	wg   sync.WaitGroup
}

var (
	_ taskqueue.Store          = (*Store)(nil)
	_ taskqueue.CancelNotifier = (*Store)(nil)
	_ taskqueue.KindCounter    = (*Store)(nil)
)

// New returns a Store over db, whose driver must be pgx's
// (github.com/jackc/pgx/v5/stdlib), on the tables Migrate created in
// opts.Schema. It does no I/O itself: it starts the goroutines that listen
// for notifications and rescue lapsed leases (see Options), which Close
// stops. A nil db or an invalid option is an error.
func New(db *sql.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("pgstore: New needs a *sql.DB")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Store{
		db:       db,
		q:        sqlQuerier{db},
		opts:     o,
		sql:      buildStatements(pgx.Identifier{o.Schema}.Sanitize()),
		chann:    channelName(o.Schema),
		groups:   make(map[string]*claimGroup),
		watchers: make(map[int]func(string)),
	}
	if o.Pool != nil {
		s.q = poolQuerier{o.Pool}
	}
	s.instance = fmt.Sprintf("%016x", rand.Uint64())
	s.wakePrefix, s.cancelPrefix = "w"+s.instance, "c"+s.instance
	s.ends.s = s
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.wg.Add(1)
	go s.rescueLoop(ctx)
	if !o.DisableListener {
		s.wg.Add(1)
		go s.listen(ctx)
	}
	return s, nil
}

// Close stops the store's background goroutines and waits for them, and
// makes Claims that wait return ErrClosed. It does not close the *sql.DB
// or the Pool. Call it after the Runners that use the store have shut
// down; a second Close does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, g := range s.groups {
		for _, w := range g.waiters {
			signal(w)
		}
	}
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
	return nil
}

// timeout bounds the store's own statements that no caller's ctx bounds:
// a claim or a batch of attempt endings that runs for callers who may
// have gone.
func (s *Store) timeout() time.Duration { return max(s.opts.Lease, 5*time.Second) }

// isUniqueViolation reports whether err is Postgres's unique_violation on
// constraint.
func isUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == constraint
}

// Insert implements taskqueue.Store. It runs in the caller's transaction
// when ctx carries one on the store's *sql.DB (see package txn): the task
// then exists, and may be claimed, only once that transaction commits,
// and the workers of every instance are woken then. pgstore is never
// full: Insert does not return ErrQueueFull.
func (s *Store) Insert(ctx context.Context, t taskqueue.Task) (taskqueue.Info, bool, error) {
	if t.ID == "" || t.Kind == "" || t.MaxAttempts < 1 {
		return taskqueue.Info{}, false, errors.New("pgstore: Insert needs a task with ID, Kind and MaxAttempts")
	}
	if !validText(t.ID) || !validText(t.Kind) || !validText(t.UniqueKey) {
		return taskqueue.Info{}, false, errors.New("pgstore: task id, kind and unique key must be UTF-8 without NUL bytes")
	}
	if err := ctx.Err(); err != nil {
		return taskqueue.Info{}, false, err
	}
	dbq := txn.From(ctx, s.db)
	tx, inTx := dbq.(*sql.Tx)
	q := s.q
	if inTx {
		q = sqlQuerier{tx}
	} else if s.opts.Pool == nil {
		q = sqlQuerier{dbq}
	}
	now := floorMicro(time.Now())
	runAt := now
	if r := ceilMicro(t.RunAt); r.After(now) {
		runAt = r
	}
	var unique any // NULL when the task has no key
	if t.UniqueKey != "" {
		unique = t.UniqueKey
	}
	payload := []byte(t.Payload)
	if payload == nil {
		payload = []byte{}
	}
	var metadata any // NULL when the task has none
	if len(t.Metadata) > 0 {
		for k, v := range t.Metadata {
			if !validText(k) || !validText(v) {
				return taskqueue.Info{}, false, errors.New("pgstore: task metadata must be UTF-8 without NUL bytes")
			}
		}
		b, err := json.Marshal(t.Metadata)
		if err != nil {
			return taskqueue.Info{}, false, fmt.Errorf("pgstore: task metadata: %w", err)
		}
		metadata = string(b)
	}
	// A task that finishes between the conflict and the lookup frees its
	// key: insert again. A transaction whose snapshot predates the holder
	// cannot see it at all, so the loop is bounded.
	for range 3 {
		var info taskqueue.Info
		found := false
		err := queryRows(ctx, q, func(r rows) (err error) {
			var notified bool
			info, err = scanInfo(r, &notified)
			found = true
			return err
		}, s.sql.insert, t.ID, t.Kind, t.MaxAttempts, unique, payload, int64(t.Timeout), now, runAt, s.chann, s.wakePrefix, metadata)
		switch {
		case isUniqueViolation(err, "tasks_pkey"):
			return taskqueue.Info{}, false, fmt.Errorf("pgstore: duplicate task id %s", t.ID)
		case err != nil:
			return taskqueue.Info{}, false, fmt.Errorf("pgstore: insert: %w", err)
		case found:
			if inTx {
				// AfterCommit never fails for the live transaction From found.
				_ = txn.AfterCommit(ctx, func(context.Context) { s.wake(t.Kind) })
			} else {
				s.wake(t.Kind)
			}
			return info, true, nil
		}
		if unique == nil {
			return taskqueue.Info{}, false, errors.New("pgstore: insert stored no row")
		}
		err = queryRows(ctx, q, func(r rows) (err error) {
			info, err = scanInfo(r)
			found = true
			return err
		}, s.sql.live, t.Kind, t.UniqueKey)
		if err != nil {
			return taskqueue.Info{}, false, fmt.Errorf("pgstore: find the task holding unique key: %w", err)
		}
		if found {
			return info, false, nil
		}
	}
	return taskqueue.Info{}, false, fmt.Errorf("pgstore: unique key %q is held by a task this transaction cannot see", t.UniqueKey)
}

// Get implements taskqueue.Store.
func (s *Store) Get(ctx context.Context, id string) (taskqueue.Info, error) {
	var (
		info  taskqueue.Info
		found bool
	)
	err := queryRows(ctx, s.q, func(r rows) (err error) {
		info, err = scanInfo(r)
		found = true
		return err
	}, s.sql.get, id)
	switch {
	case err != nil:
		return taskqueue.Info{}, fmt.Errorf("pgstore: get: %w", err)
	case !found:
		return taskqueue.Info{}, taskqueue.ErrNotFound
	}
	return info, nil
}

// List implements taskqueue.Store, with one indexed query that walks
// (created_at, id) backwards from q.After and filters as it goes.
func (s *Store) List(ctx context.Context, q taskqueue.ListQuery) ([]taskqueue.Info, error) {
	if q.Limit < 1 {
		return nil, errors.New("pgstore: List needs a limit of at least 1")
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.Status != 0 {
		where = append(where, "status = "+arg(q.Status.String()))
	}
	if q.Kind != "" {
		where = append(where, "kind = "+arg(q.Kind))
	}
	if q.After != nil {
		// A position between two microseconds (a cursor made elsewhere)
		// lies after every task of the earlier one: compare with the
		// later one and an id below all ids.
		at, id := q.After.CreatedAt, q.After.ID
		if c := ceilMicro(at); !c.Equal(at) {
			at, id = c, ""
		}
		where = append(where, fmt.Sprintf("(created_at, id) < (%s, %s)", arg(at), arg(id)))
	}
	if !q.FinishedAfter.IsZero() {
		where = append(where, "(finished_at IS NULL OR finished_at > "+arg(floorMicro(q.FinishedAfter))+")")
	}
	query := s.sql.list
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT " + arg(q.Limit)
	out := make([]taskqueue.Info, 0, min(q.Limit, 64))
	err := queryRows(ctx, s.q, func(r rows) error {
		info, err := scanInfo(r)
		out = append(out, info)
		return err
	}, query, args...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list: %w", err)
	}
	return out, nil
}

// Cancel implements taskqueue.Store. The request for a running task is
// also sent as a notification, so the instance running it interrupts the
// handler at once (see NotifyCancel) rather than at its next heartbeat.
func (s *Store) Cancel(ctx context.Context, id string) (taskqueue.Info, error) {
	var (
		info  taskqueue.Info
		found bool
	)
	err := queryRows(ctx, s.q, func(r rows) (err error) {
		var notified bool
		info, err = scanInfo(r, &notified)
		found = true
		return err
	}, s.sql.cancel, id, floorMicro(time.Now()), taskqueue.ErrCanceled.Error(), s.chann, s.cancelPrefix)
	if err != nil {
		return taskqueue.Info{}, fmt.Errorf("pgstore: cancel: %w", err)
	}
	if found {
		if info.Status == taskqueue.StatusRunning {
			s.cancelRequested(id)
		}
		return info, nil
	}
	info, err = s.Get(ctx, id)
	if err != nil {
		return taskqueue.Info{}, err
	}
	return info, taskqueue.ErrFinished
}

// Heartbeat implements taskqueue.Store: it extends the claim's lease to
// Lease from now.
func (s *Store) Heartbeat(ctx context.Context, id string, claim int64) (bool, error) {
	var canceled, held, exists bool
	err := queryRows(ctx, s.q, func(r rows) error {
		return r.Scan(&canceled, &held, &exists)
	}, s.sql.heartbeat, id, claim, floorMicro(time.Now()).Add(s.opts.Lease))
	if err != nil {
		return false, fmt.Errorf("pgstore: heartbeat: %w", err)
	}
	return canceled, heldErr(held, exists)
}

// heldErr is the error of an update that changed a row (held) or not.
func heldErr(held, exists bool) error {
	switch {
	case held:
		return nil
	case exists:
		return taskqueue.ErrLeaseLost
	default:
		return taskqueue.ErrNotFound
	}
}

// Progress implements taskqueue.Store. Bytes a text column cannot hold
// (NUL, invalid UTF-8) are stored as '?'.
func (s *Store) Progress(ctx context.Context, id string, claim int64, p taskqueue.Progress) error {
	if p.Percent < 0 || p.Percent > 100 || len(p.Message) > taskqueue.MaxProgressMessage {
		return errors.New("pgstore: progress outside 0..100 or message too long")
	}
	var held, exists bool
	err := queryRows(ctx, s.q, func(r rows) error {
		return r.Scan(&held, &exists)
	}, s.sql.progress, id, claim, p.Percent, pgText(p.Message))
	if err != nil {
		return fmt.Errorf("pgstore: progress: %w", err)
	}
	return heldErr(held, exists)
}

// DeleteFinishedBefore implements taskqueue.Store. It deletes in batches
// of Options.DeleteBatch, each its own statement, until a batch comes back
// short or ctx ends.
func (s *Store) DeleteFinishedBefore(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		n, err := s.q.exec(ctx, s.sql.deleteFinished, ceilMicro(cutoff), s.opts.DeleteBatch)
		total += int(n)
		if err != nil {
			return total, fmt.Errorf("pgstore: delete finished tasks: %w", err)
		}
		if n < int64(s.opts.DeleteBatch) {
			return total, nil
		}
	}
}

// Stats implements taskqueue.Store. It counts every row of the table, so
// it costs a scan of the tasks kept for Retention.
func (s *Store) Stats(ctx context.Context) (taskqueue.Stats, error) {
	var st taskqueue.Stats
	err := queryRows(ctx, s.q, func(r rows) error {
		return r.Scan(&st.Pending, &st.Running, &st.Succeeded, &st.Failed, &st.Canceled)
	}, s.sql.stats)
	if err != nil {
		return taskqueue.Stats{}, fmt.Errorf("pgstore: stats: %w", err)
	}
	return st, nil
}

// StatsByKind implements taskqueue.KindCounter, with one scan of the table
// as Stats.
func (s *Store) StatsByKind(ctx context.Context) (map[string]taskqueue.Stats, error) {
	out := map[string]taskqueue.Stats{}
	err := queryRows(ctx, s.q, func(r rows) error {
		var (
			kind, status string
			n            int
		)
		if err := r.Scan(&kind, &status, &n); err != nil {
			return err
		}
		st := out[kind]
		switch status {
		case "pending":
			st.Pending = n
		case "running":
			st.Running = n
		case "succeeded":
			st.Succeeded = n
		case "failed":
			st.Failed = n
		case "canceled":
			st.Canceled = n
		}
		out[kind] = st
		return nil
	}, s.sql.statsByKind)
	if err != nil {
		return nil, fmt.Errorf("pgstore: stats by kind: %w", err)
	}
	return out, nil
}

// NotifyCancel implements taskqueue.CancelNotifier: fn is called with the
// id of each running task whose cancellation is requested, through this
// store or, by notification, through any other on the same schema, until
// stop is called. fn runs on the caller of Cancel or on the listener's
// goroutine, and must return quickly. stop waits for calls of fn in
// progress.
func (s *Store) NotifyCancel(fn func(id string)) (stop func()) {
	s.watchMu.Lock()
	s.watchID++
	key := s.watchID
	s.watchers[key] = fn
	s.watchMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			// The write lock waits for the calls of fn under way.
			s.watchMu.Lock()
			delete(s.watchers, key)
			s.watchMu.Unlock()
		})
	}
}

// cancelRequested tells the watchers that id's cancellation was requested.
func (s *Store) cancelRequested(id string) {
	s.watchMu.RLock()
	defer s.watchMu.RUnlock()
	for _, fn := range s.watchers {
		fn(id)
	}
}
