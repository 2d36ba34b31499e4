package pgstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
	"github.com/asynckit/asynckit/txn"
)

// idle returns a Runner that is never started, to fill store through
// Submit and drive the store directly.
func idle(t *testing.T, store taskqueue.Store) *taskqueue.Runner {
	return runner(t, store, taskqueue.Options{MaxAttempts: 2}, func(r *taskqueue.Runner) {
		require.NoError(t, taskqueue.Handle(r, "job", func(context.Context, *taskqueue.Job, args) (int, error) { return 0, nil }))
	})
}

// claimOne claims a task of any kind, failing the test if none is due.
func claimOne(t *testing.T, s taskqueue.Store) taskqueue.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	task, err := s.Claim(ctx, nil)
	require.NoError(t, err)
	return task
}

// rescueOne runs Rescue until it rescues a task: once the lease lapses.
func rescueOne(t *testing.T, s *pgstore.Store) {
	t.Helper()
	eventually(t, 10*time.Second, "a lapsed lease is rescued", func() bool {
		n, err := s.Rescue(context.Background())
		require.NoError(t, err)
		require.LessOrEqual(t, n, 1)
		return n == 1
	})
}

func TestStaleWorkerGetsErrLeaseLostAndTheNewOutcomeStands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	// The rescuer's own schedule is far off: the test rescues by hand.
	store := open(t, db, schema, pgstore.Options{Lease: 200 * time.Millisecond, RescueInterval: time.Hour, DisableListener: true})
	r := idle(t, store)
	info, err := r.Submit(ctx, "job", args{N: 1})
	require.NoError(t, err)

	stale := claimOne(t, store)
	require.Equal(t, 1, stale.Attempt)
	require.WithinDuration(t, stale.StartedAt.Add(200*time.Millisecond), stale.LeaseUntil, time.Millisecond)
	rescueOne(t, store)
	rescued, err := store.Get(ctx, info.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusPending, rescued.Status)
	require.Equal(t, 1, rescued.Attempt, "the lost attempt is counted")
	require.Contains(t, rescued.Error, "attempt 1 lost its lease")
	require.Equal(t, stale.Version+1, rescued.Version, "the rescue is a change of the task")

	fresh := claimOne(t, store)
	require.Equal(t, info.ID, fresh.ID)
	require.Equal(t, 2, fresh.Attempt)
	require.NotEqual(t, stale.ClaimToken, fresh.ClaimToken)

	// The worker presumed dead wakes up while the new attempt runs, and
	// again after it finished: every update it makes is refused.
	for _, when := range []string{"while the new attempt runs", "after it finished"} {
		_, err = store.Finish(ctx, info.ID, stale.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusFailed, Error: "late"})
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost, when)
		_, err = store.Retry(ctx, info.ID, stale.ClaimToken, 0, "late")
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost, when)
		_, err = store.Release(ctx, info.ID, stale.ClaimToken)
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost, when)
		_, err = store.Heartbeat(ctx, info.ID, stale.ClaimToken)
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost, when)
		require.ErrorIs(t, store.Progress(ctx, info.ID, stale.ClaimToken, taskqueue.Progress{Percent: 99}), taskqueue.ErrLeaseLost, when)
		if when == "while the new attempt runs" {
			got, err := store.Get(ctx, info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusRunning, got.Status)
			require.Equal(t, 2, got.Attempt)
			require.Zero(t, got.Progress.Percent)
			done, err := store.Finish(ctx, info.ID, fresh.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded, Result: json.RawMessage(`"second"`)})
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusSucceeded, done.Status)
		}
	}
	got, err := store.Get(ctx, info.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusSucceeded, got.Status, "the new attempt's outcome stands")
	require.JSONEq(t, `"second"`, string(got.Result))
	require.Empty(t, got.Error)
	require.Equal(t, 2, got.Attempt)
}

func TestRescueEndsWhatCannotRunAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{Lease: 100 * time.Millisecond, RescueInterval: time.Hour, DisableListener: true})
	r := idle(t, store)

	last, err := r.Submit(ctx, "job", args{}, taskqueue.MaxAttempts(1))
	require.NoError(t, err)
	claimOne(t, store)
	rescueOne(t, store)
	got, err := store.Get(ctx, last.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusFailed, got.Status, "its only attempt was lost")
	require.Contains(t, got.Error, "lost its lease")
	require.False(t, got.FinishedAt.IsZero())

	canceled, err := r.Submit(ctx, "job", args{})
	require.NoError(t, err)
	claimOne(t, store)
	info, err := store.Cancel(ctx, canceled.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusRunning, info.Status)
	rescueOne(t, store)
	got, err = store.Get(ctx, canceled.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusCanceled, got.Status, "a cancel requested of a lost attempt wins")
	require.Equal(t, taskqueue.ErrCanceled.Error(), got.Error)

	st, err := store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Failed: 1, Canceled: 1}, st)
}

func TestRescuersOnManyInstancesRescueEachTaskOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	opts := pgstore.Options{Lease: 100 * time.Millisecond, RescueInterval: time.Hour, DisableListener: true}
	store := open(t, db, schema, opts)
	r := idle(t, store)
	const tasks = 300
	for range tasks {
		_, err := r.Submit(ctx, "job", args{})
		require.NoError(t, err)
	}
	for range tasks {
		claimOne(t, store)
	}
	var stores []*pgstore.Store
	for range 4 {
		stores = append(stores, open(t, connect(t, schema, ""), schema, opts))
	}
	time.Sleep(150 * time.Millisecond) // let every lease lapse: the condition under test is time itself
	var wg sync.WaitGroup
	counts := make([]int, len(stores))
	for i, s := range stores {
		wg.Go(func() {
			n, err := s.Rescue(ctx)
			require.NoError(t, err)
			counts[i] = n
		})
	}
	wg.Wait()
	total := 0
	for _, n := range counts {
		total += n
	}
	require.Equal(t, tasks, total, "each lapsed task rescued once, by one instance: %v", counts)
	st, err := store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Pending: tasks}, st)
}

func TestDeleteFinishedBeforeDeletesInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{DeleteBatch: 7, DisableListener: true})
	r := idle(t, store)
	for range 30 {
		info, err := r.Submit(ctx, "job", args{})
		require.NoError(t, err)
		_, err = store.Cancel(ctx, info.ID)
		require.NoError(t, err)
	}
	keep, err := r.Submit(ctx, "job", args{})
	require.NoError(t, err)
	n, err := store.DeleteFinishedBefore(ctx, time.Now().Add(time.Second))
	require.NoError(t, err)
	require.Equal(t, 30, n, "every finished task, in batches of 7")
	_, err = store.Get(ctx, keep.ID)
	require.NoError(t, err, "a pending task is never deleted")
	n, err = store.DeleteFinishedBefore(ctx, time.Now().Add(time.Second))
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestTextsAPostgresColumnCannotHoldAreStoredAsQuestionMarks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{DisableListener: true})
	r := idle(t, store)
	info, err := r.Submit(ctx, "job", args{})
	require.NoError(t, err)
	task := claimOne(t, store)
	require.NoError(t, store.Progress(ctx, task.ID, task.ClaimToken, taskqueue.Progress{Percent: 1, Message: "a\x00b"}))
	bad := "nul\x00 and \xff\xfe invalid"
	done, err := store.Finish(ctx, info.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusFailed, Error: bad})
	require.NoError(t, err)
	require.Equal(t, "nul? and ? invalid", done.Error, "never longer than what was given")
	require.Equal(t, "a?b", done.Progress.Message)

	_, _, err = store.Insert(ctx, taskqueue.Task{Info: taskqueue.Info{ID: "x", Kind: "bad\x00kind", MaxAttempts: 1}})
	require.Error(t, err, "a kind with NUL is refused, not altered")
}

func TestPayloadAndResultSizesAreCapped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{})
	r := runner(t, store, taskqueue.Options{MaxPayloadBytes: 1024, PollInterval: 50 * time.Millisecond}, func(r *taskqueue.Runner) {
		require.NoError(t, taskqueue.Handle(r, "echo", func(_ context.Context, _ *taskqueue.Job, n int) (string, error) {
			return strings.Repeat("r", n), nil
		}))
	})
	require.NoError(t, r.Start(ctx))
	_, err := r.Submit(ctx, "echo", json.RawMessage(`"`+strings.Repeat("p", 1024)+`"`))
	require.ErrorContains(t, err, "exceeds MaxPayloadBytes", "a payload past the cap is refused")
	big, err := r.Submit(ctx, "echo", 2000)
	require.NoError(t, err)
	small, err := r.Submit(ctx, "echo", 10)
	require.NoError(t, err)
	done, err := r.Wait(ctx, big.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusFailed, done.Status, "a result past the cap fails the task")
	require.Contains(t, done.Error, "exceeds MaxPayloadBytes")
	done, err = r.Wait(ctx, small.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
	require.JSONEq(t, `"rrrrrrrrrr"`, string(done.Result))
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := setup(t)
	// A schema whose name needs quoting, migrated by many instances at
	// once and then again: one set of tables, one row per version.
	const schema = "Odd Schema-Ω"
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), `DROP SCHEMA "Odd Schema-Ω" CASCADE`) })
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { require.NoError(t, pgstore.Migrate(ctx, db, schema)) })
	}
	wg.Wait()
	require.NoError(t, pgstore.Migrate(ctx, db, schema))
	var versions, max int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*), max(version) FROM "Odd Schema-Ω".pgstore_migrations`).Scan(&versions, &max))
	require.Equal(t, pgstore.SchemaVersion, versions)
	require.Equal(t, pgstore.SchemaVersion, max)

	// Inside the caller's transaction, the caller's search_path is left as it was.
	err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		var before, after string
		require.NoError(t, tx.QueryRowContext(ctx, "SHOW search_path").Scan(&before))
		_, err := tx.ExecContext(ctx, `DROP SCHEMA "Odd Schema-Ω" CASCADE`)
		require.NoError(t, err)
		require.NoError(t, pgstore.Migrate(ctx, db, schema))
		require.NoError(t, tx.QueryRowContext(ctx, "SHOW search_path").Scan(&after))
		require.Equal(t, before, after)
		return nil
	})
	require.NoError(t, err)

	_, err = db.ExecContext(ctx, `INSERT INTO "Odd Schema-Ω".pgstore_migrations (version, name) VALUES (99, 'from the future')`)
	require.NoError(t, err)
	require.ErrorContains(t, pgstore.Migrate(ctx, db, schema), "newer than this package's")
	for _, bad := range []string{strings.Repeat("s", 64), "nul\x00", "\xff"} {
		require.Error(t, pgstore.Migrate(ctx, db, bad), "%q", bad)
	}
	require.Error(t, pgstore.Migrate(ctx, nil, schema))
}

func TestOptionsAreValidated(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("pgx", "postgres://127.0.0.1:1/none") // never connected to
	require.NoError(t, err)
	defer db.Close()
	for _, tc := range []struct {
		name string
		opts pgstore.Options
	}{
		{"short lease", pgstore.Options{Lease: time.Millisecond}},
		{"negative rescue interval", pgstore.Options{RescueInterval: -1}},
		{"fast poll", pgstore.Options{PollInterval: time.Millisecond}},
		{"negative delete batch", pgstore.Options{DeleteBatch: -1}},
		{"huge delete batch", pgstore.Options{DeleteBatch: 100_001}},
		{"long schema", pgstore.Options{Schema: strings.Repeat("s", 64)}},
		{"listen config without a listener", pgstore.Options{DisableListener: true, ListenConfig: connConfigNoServer()}},
	} {
		_, err := pgstore.New(db, tc.opts)
		require.ErrorContains(t, err, "pgstore: ", tc.name)
	}
	_, err = pgstore.New(nil, pgstore.Options{})
	require.Error(t, err)
	s, err := pgstore.New(db, pgstore.Options{DisableListener: true})
	require.NoError(t, err, "the zero value is all defaults")
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "a second Close does nothing")
	_, err = s.Claim(context.Background(), nil)
	require.ErrorIs(t, err, pgstore.ErrClosed)
}

// connConfigNoServer is a config that New accepts but nothing connects to.
func connConfigNoServer() *pgx.ConnConfig {
	cfg, err := pgx.ParseConfig("postgres://127.0.0.1:1/none")
	if err != nil {
		panic(err)
	}
	return cfg
}
