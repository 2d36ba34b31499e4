package pgstore_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/faultproxy"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
	"github.com/asynckit/asynckit/txn"
)

func TestSubmitInsideATransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	_, err := db.ExecContext(ctx, "CREATE TABLE orders (id bigint PRIMARY KEY)")
	require.NoError(t, err)
	store := open(t, db, schema, pgstore.Options{})
	ran := make(chan int, 4)
	r := runner(t, store, taskqueue.Options{}, func(r *taskqueue.Runner) {
		require.NoError(t, taskqueue.Handle(r, "ship", func(_ context.Context, _ *taskqueue.Job, a args) (int, error) {
			ran <- a.N
			return a.N, nil
		}))
	})
	require.NoError(t, r.Start(ctx))
	errRefused := errors.New("payment refused")

	t.Run("rolled back, the order and its task are both gone", func(t *testing.T) {
		var id string
		err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO orders VALUES (1)"); err != nil {
				return err
			}
			info, err := r.Submit(ctx, "ship", args{N: 1})
			if err != nil {
				return err
			}
			id = info.ID
			return errRefused
		})
		require.ErrorIs(t, err, errRefused)
		var orders int
		require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM orders").Scan(&orders))
		require.Zero(t, orders)
		_, err = r.Get(ctx, id)
		require.ErrorIs(t, err, taskqueue.ErrNotFound)
		st, err := r.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, taskqueue.Stats{}, st)
	})

	t.Run("committed, the task runs, and not before the commit", func(t *testing.T) {
		var id string
		err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO orders VALUES (2)"); err != nil {
				return err
			}
			info, err := r.Submit(ctx, "ship", args{N: 2})
			if err != nil {
				return err
			}
			id = info.ID
			// Outside the transaction the task does not exist yet, so no
			// worker, here or elsewhere, can claim it.
			_, err = r.Get(context.Background(), id)
			require.ErrorIs(t, err, taskqueue.ErrNotFound)
			other := open(t, connect(t, schema, ""), schema, pgstore.Options{DisableListener: true})
			short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err = other.Claim(short, nil)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			return nil
		})
		require.NoError(t, err)
		done, err := r.Wait(ctx, id)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusSucceeded, done.Status)
		require.Equal(t, 2, <-ran)
		require.Empty(t, ran, "the rolled-back task never ran")
	})
}

// twoInstances makes instances A and B of one service on one schema, each
// with a pool and store of its own: A's store runs its queries and LISTEN
// on a native pgx pool, B's on a *sql.DB. Only A runs "long" tasks; B runs
// other kinds, and follows A's tasks by polling every 50ms.
func twoInstances(t *testing.T, register func(r *taskqueue.Runner)) (a, b *taskqueue.Runner) {
	t.Helper()
	_, schema := setup(t)
	a = runner(t, open(t, connect(t, schema, ""), schema, pgstore.Options{Pool: newPool(t, schema)}), taskqueue.Options{}, register)
	b = runner(t, open(t, connect(t, schema, ""), schema, pgstore.Options{}), taskqueue.Options{PollInterval: 50 * time.Millisecond}, func(r *taskqueue.Runner) {
		require.NoError(t, taskqueue.Handle(r, "other", func(context.Context, *taskqueue.Job, args) (int, error) { return 0, nil }))
	})
	require.NoError(t, a.Start(context.Background()))
	require.NoError(t, b.Start(context.Background()))
	return a, b
}

func TestAcrossInstances(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reported := make(chan struct{}, 1)
	causes := make(chan error, 1)
	a, b := twoInstances(t, func(r *taskqueue.Runner) {
		require.NoError(t, taskqueue.Handle(r, "long", func(ctx context.Context, job *taskqueue.Job, _ args) (int, error) {
			if err := job.Progress(40, "halfway"); err != nil {
				return 0, err
			}
			reported <- struct{}{}
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return 0, ctx.Err()
		}))
		require.NoError(t, taskqueue.Handle(r, "quick", func(context.Context, *taskqueue.Job, args) (int, error) { return 7, nil }))
	})

	info, err := a.Submit(ctx, "long", args{})
	require.NoError(t, err)
	updates, err := b.Subscribe(ctx, info.ID)
	require.NoError(t, err)
	<-reported

	got, err := b.Get(ctx, info.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusRunning, got.Status, "B reads the task A runs")
	require.Equal(t, taskqueue.Progress{Percent: 40, Message: "halfway"}, got.Progress, "and its progress")
	page, err := b.List(ctx, taskqueue.Filter{Status: taskqueue.StatusRunning}, "", 10)
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	require.Equal(t, info.ID, page.Items[0].ID)
	for u := range updates {
		if u.Progress.Percent == 40 {
			break // B's subscription saw the progress made on A
		}
	}

	start := time.Now()
	require.NoError(t, b.Cancel(ctx, info.ID))
	require.ErrorIs(t, <-causes, taskqueue.ErrCanceled)
	took := time.Since(start)
	require.Less(t, took, time.Second, "a cancel through B reaches the handler on A within a second")
	t.Logf("cancel through B reached the handler on A in %v", took)
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	done, err := b.Wait(waitCtx, info.ID)
	require.NoError(t, err, "B's Wait sees the end A recorded")
	require.Equal(t, taskqueue.StatusCanceled, done.Status)
	var last taskqueue.Info
	for u := range updates {
		last = u
	}
	require.Equal(t, taskqueue.StatusCanceled, last.Status, "B's subscription ends with the terminal Info")

	// Many quick tasks, each followed from B: no Wait misses its end.
	var ids []string
	for range 50 {
		info, err := a.Submit(ctx, "quick", args{})
		require.NoError(t, err)
		ids = append(ids, info.ID)
	}
	for _, id := range ids {
		done, err := b.Wait(waitCtx, id)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusSucceeded, done.Status)
		require.JSONEq(t, "7", string(done.Result))
	}
}

func TestPickupFallsBackToPollingWhileTheListenerIsCut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	proxy, err := faultproxy.New(addrOf(connConfig(t, schema, "")))
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	// A listens through the proxy and polls once a second; its queries go
	// straight to Postgres. B, another process, only submits.
	const poll = time.Second
	storeA := open(t, connect(t, schema, ""), schema, pgstore.Options{PollInterval: poll, ListenConfig: connConfig(t, schema, proxy.Addr())})
	started := make(chan time.Time, 1)
	a := runner(t, storeA, taskqueue.Options{Workers: 1}, func(r *taskqueue.Runner) {
		require.NoError(t, taskqueue.Handle(r, "job", func(context.Context, *taskqueue.Job, args) (int, error) {
			started <- time.Now()
			return 0, nil
		}))
	})
	b := idle(t, open(t, db, schema, pgstore.Options{DisableListener: true}))
	require.NoError(t, a.Start(ctx))

	pickup := func() time.Duration {
		t.Helper()
		at := time.Now()
		_, err := b.Submit(ctx, "job", args{})
		require.NoError(t, err)
		select {
		case s := <-started:
			return s.Sub(at)
		case <-time.After(5 * poll):
			t.Fatal("the task was never picked up")
			return 0
		}
	}
	eventually(t, 5*time.Second, "A listens", storeA.Listening)
	fast := pickup()
	require.Less(t, fast, poll/2, "a notification wakes A at once")

	proxy.Cut()
	eventually(t, 5*time.Second, "A notices the listener is gone", func() bool { return !storeA.Listening() })
	slow := pickup()
	require.Less(t, slow, 2*poll, "with the listener down, polling finds the task")

	proxy.Restore()
	eventually(t, 10*time.Second, "the listener reconnects", storeA.Listening)
	again := pickup()
	require.Less(t, again, poll/2, "once it is back, a notification wakes A at once again")
	t.Logf("pickup: %v listening, %v polling while cut, %v after reconnecting", fast, slow, again)
}
