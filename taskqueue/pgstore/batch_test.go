package pgstore_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// blockTasks takes a lock on the tasks table that holds up every claim
// and attempt ending (and nothing else) until the returned func releases
// it. It returns once the lock is held.
func blockTasks(t *testing.T, db *sql.DB) (release func()) {
	t.Helper()
	tx, err := db.BeginTx(context.Background(), nil)
	require.NoError(t, err)
	_, err = tx.ExecContext(context.Background(), "LOCK TABLE tasks IN EXCLUSIVE MODE")
	require.NoError(t, err)
	released := false
	release = func() {
		if !released {
			released = true
			require.NoError(t, tx.Rollback())
		}
	}
	t.Cleanup(release)
	return release
}

// waitBlocked returns once n statements wait for the lock of blockTasks.
func waitBlocked(t *testing.T, db *sql.DB, n int) {
	t.Helper()
	eventually(t, 5*time.Second, "statements wait for the lock", func() bool {
		var waiting int
		require.NoError(t, db.QueryRowContext(context.Background(),
			`SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'tasks'::regclass`).Scan(&waiting))
		return waiting == n
	})
}

type claimResult struct {
	task taskqueue.Task
	err  error
}

func claimAsync(store *pgstore.Store, ctx context.Context) <-chan claimResult {
	ch := make(chan claimResult, 1)
	go func() {
		task, err := store.Claim(ctx, nil)
		ch <- claimResult{task, err}
	}()
	return ch
}

// Claims that wait together are served by one statement. A waiter whose
// ctx ends while that statement runs (its leader's included) gets ctx's
// error and no task: the task goes to a waiter still there or, when none
// is, back to pending with its attempt given back.
func TestCoalescedClaimPassesOverWaitersThatLeft(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{DisableListener: true})
	r := idle(t, store)
	info, err := r.Submit(ctx, "job", args{})
	require.NoError(t, err)

	t.Run("to a waiter still there", func(t *testing.T) {
		release := blockTasks(t, db)
		leaderCtx, leave := context.WithCancel(ctx)
		leader := claimAsync(store, leaderCtx)
		waitBlocked(t, db, 1) // the leader's statement, for the one waiter
		other := claimAsync(store, ctx)
		time.Sleep(100 * time.Millisecond) // the second waiter queues behind it
		leave()
		release()
		got := <-leader
		require.ErrorIs(t, got.err, context.Canceled, "the leader left: it has no task")
		got = <-other
		require.NoError(t, got.err)
		require.Equal(t, info.ID, got.task.ID, "the waiter still there has it")
		require.Equal(t, 1, got.task.Attempt)
		_, err := store.Release(ctx, got.task.ID, got.task.ClaimToken)
		require.NoError(t, err)
	})

	t.Run("back to pending when every waiter left", func(t *testing.T) {
		before, err := store.Get(ctx, info.ID)
		require.NoError(t, err)
		release := blockTasks(t, db)
		leaderCtx, leave := context.WithCancel(ctx)
		leader := claimAsync(store, leaderCtx)
		waitBlocked(t, db, 1)
		leave()
		release()
		require.ErrorIs(t, (<-leader).err, context.Canceled)
		eventually(t, 5*time.Second, "the task is given back", func() bool {
			now, err := store.Get(ctx, info.ID)
			require.NoError(t, err)
			return now.Status == taskqueue.StatusPending && now.Version == before.Version+2
		})
		now, err := store.Get(ctx, info.ID)
		require.NoError(t, err)
		require.Equal(t, before.Attempt, now.Attempt, "the attempt is given back")
		task := claimOne(t, store)
		require.Equal(t, info.ID, task.ID)
		require.Equal(t, before.Attempt+1, task.Attempt)
	})
}

type endResult struct {
	info taskqueue.Info
	err  error
}

// Attempt endings that arrive while another is in flight go out together
// in one statement, and each caller gets the answer for its own claim: a
// live one is applied, a stale token is ErrLeaseLost, an unknown id is
// ErrNotFound, and a caller whose ctx ends while it still waits in the
// queue leaves it with ctx's error, its ending never applied.
func TestCoalescedEndingsAnswerEachCallerForItsOwnClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{DisableListener: true})
	r := idle(t, store)
	for range 4 {
		_, err := r.Submit(ctx, "job", args{})
		require.NoError(t, err)
	}
	first, live, stale, left := claimOne(t, store), claimOne(t, store), claimOne(t, store), claimOne(t, store)
	_, err := store.Release(ctx, stale.ID, stale.ClaimToken)
	require.NoError(t, err)
	restaled := claimOne(t, store) // stale's task again, under a new token
	require.Equal(t, stale.ID, restaled.ID)

	release := blockTasks(t, db)
	ok := taskqueue.Outcome{Status: taskqueue.StatusSucceeded}
	end := func(ctx context.Context, id string, claim int64) <-chan endResult {
		ch := make(chan endResult, 1)
		go func() {
			info, err := store.Finish(ctx, id, claim, ok)
			ch <- endResult{info, err}
		}()
		return ch
	}
	inFlight := end(ctx, first.ID, first.ClaimToken)
	waitBlocked(t, db, 1)
	leftCtx, leave := context.WithCancel(ctx)
	queued := []<-chan endResult{
		end(ctx, live.ID, live.ClaimToken),
		end(ctx, stale.ID, stale.ClaimToken),
		end(ctx, "no-such-task", 1),
		end(leftCtx, left.ID, left.ClaimToken),
	}
	time.Sleep(100 * time.Millisecond) // all four queue behind the statement in flight
	leave()
	got := <-queued[3]
	require.ErrorIs(t, got.err, context.Canceled, "it left the queue at once")
	release()

	got = <-inFlight
	require.NoError(t, got.err)
	require.Equal(t, taskqueue.StatusSucceeded, got.info.Status)
	got = <-queued[0]
	require.NoError(t, got.err)
	require.Equal(t, live.ID, got.info.ID)
	require.Equal(t, taskqueue.StatusSucceeded, got.info.Status)
	got = <-queued[1]
	require.ErrorIs(t, got.err, taskqueue.ErrLeaseLost, "a stale token")
	got = <-queued[2]
	require.ErrorIs(t, got.err, taskqueue.ErrNotFound)

	now, err := store.Get(ctx, stale.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusRunning, now.Status, "the stale ending changed nothing")
	now, err = store.Get(ctx, left.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusRunning, now.Status, "the ending that left was never applied")
	done, err := store.Finish(ctx, left.ID, left.ClaimToken, ok)
	require.NoError(t, err, "its claim still holds")
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
}

// A statement that fails answers every caller it carried with the error,
// and leaves the store working: the next claim and ending go through.
func TestFailedStatementsAnswerTheirCallersAndLeaveTheStoreWorking(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{DisableListener: true})
	r := idle(t, store)
	_, err := r.Submit(ctx, "job", args{})
	require.NoError(t, err)

	_, err = db.ExecContext(ctx, "ALTER FUNCTION claim_due RENAME TO claim_due_away")
	require.NoError(t, err)
	_, err = store.Claim(ctx, nil)
	require.ErrorContains(t, err, "pgstore: claim: ")
	_, err = db.ExecContext(ctx, "ALTER FUNCTION claim_due_away RENAME TO claim_due")
	require.NoError(t, err)
	task := claimOne(t, store)

	_, err = db.ExecContext(ctx, "ALTER TABLE tasks ADD CONSTRAINT no_success CHECK (status <> 'succeeded') NOT VALID")
	require.NoError(t, err)
	_, err = store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded})
	require.ErrorContains(t, err, "pgstore: end attempt: ")
	_, err = db.ExecContext(ctx, "ALTER TABLE tasks DROP CONSTRAINT no_success")
	require.NoError(t, err)
	done, err := store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded})
	require.NoError(t, err, "the failed ending changed nothing: the claim still holds")
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
}
