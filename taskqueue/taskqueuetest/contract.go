package taskqueuetest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func init() {
	register(
		behaviour{"store: Claim blocks until a task of its kinds is due", storeClaimWaits},
		behaviour{"store: a delayed task wakes a Claim of its kind, whoever else waits", storeDelayedWakesItsKind},
		behaviour{"store: updates from a stale claim are ErrLeaseLost", storeStaleAttempt},
		behaviour{"store: Release refunds the attempt, Retry schedules it", storeReleaseRetry},
		behaviour{"store: a cancel request wins over the attempt's outcome", storeCancelRequest},
		behaviour{"store: DeleteFinishedBefore deletes only tasks finished before the cutoff", storeDelete},
		behaviour{"store: a Cancel racing a Finish agrees with it on one ending", storeCancelRacesFinish},
		behaviour{"store: unknown ids are ErrNotFound and a duplicate id is refused", storeUnknownAndDuplicate},
	)
}

// idle makes a Runner that is never started, to fill a store through
// Submit and drive it directly.
func idle(t *testing.T, newStore func(*testing.T) taskqueue.Store) *bundle {
	return newBundle(t, newStore, taskqueue.Options{MaxAttempts: 5}, func(r *taskqueue.Runner) {
		handle(t, r, "a", double)
		handle(t, r, "b", double)
	})
}

func claim(t *testing.T, s taskqueue.Store, kinds ...string) taskqueue.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	task, err := s.Claim(ctx, kinds)
	require.NoError(t, err)
	return task
}

func storeClaimWaits(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	start := time.Now()
	a := b.submit("a", Payload{N: 7})

	task := claim(t, b.store, "a")
	require.Equal(t, a.ID, task.ID)
	require.Equal(t, taskqueue.StatusRunning, task.Status)
	require.Equal(t, 1, task.Attempt)
	requireTime(t, start, task.StartedAt, "StartedAt")
	require.JSONEq(t, `{"n":7}`, string(task.Payload))

	// Nothing due: Claim waits for ctx.
	short, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := b.store.Claim(short, []string{"a", "b"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	requireTime(t, start.Add(time.Minute), time.Now(), "Claim waited for its ctx")

	// A task of another kind does not wake a Claim for "a"; one of its kind does.
	got := make(chan taskqueue.Task)
	go func() {
		task, err := b.store.Claim(ctx, []string{"a"})
		if err == nil {
			got <- task
		}
	}()
	synctest.Wait()
	other := b.submit("b", Payload{})
	synctest.Wait()
	select {
	case task := <-got:
		t.Fatalf("Claim for kind a took %s task", task.Kind)
	default:
	}
	delayed := b.submit("a", Payload{}, taskqueue.Delay(time.Hour))
	at := time.Now()
	task = <-got
	require.Equal(t, delayed.ID, task.ID)
	requireTime(t, at.Add(time.Hour), time.Now(), "Claim returned when the delayed task fell due")
	require.Equal(t, other.ID, claim(t, b.store, "b").ID)
	claimNone(t, b.store)

	// A Claim whose ctx has ended takes nothing, even with a task due: a
	// task it took would be left running with no one to run it.
	due := b.submit("a", Payload{})
	ended, endNow := context.WithCancel(ctx)
	endNow()
	_, err = b.store.Claim(ended, nil)
	require.ErrorIs(t, err, context.Canceled)
	left, err := b.store.Get(ctx, due.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusPending, left.Status, "still pending")
	require.Equal(t, due.ID, claim(t, b.store).ID)
}

// storeDelayedWakesItsKind: Claims for other kinds that wait too, and wait
// first, must not swallow the wake-up of a delayed task falling due, as
// when Runners of different kinds share a store.
func storeDelayedWakesItsKind(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan taskqueue.Task, 2)
	claimer := func(kind string) {
		if task, err := b.store.Claim(ctx, []string{kind}); err == nil {
			got <- task
		}
	}
	go claimer("a")
	synctest.Wait()
	go claimer("b")
	synctest.Wait()
	start := time.Now()
	delayed := b.submit("b", Payload{}, taskqueue.Delay(time.Minute))
	select {
	case task := <-got:
		require.Equal(t, delayed.ID, task.ID)
		requireTime(t, start.Add(time.Minute), time.Now(), "claimed when due")
	case <-time.After(time.Hour):
		t.Fatal("the delayed b task was never claimed")
	}
	cancel()
	synctest.Wait()
	require.Empty(t, got, "the Claim for a took nothing")
}

// claimNone fails the test if any task can be claimed.
func claimNone(t *testing.T, s taskqueue.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	task, err := s.Claim(ctx, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded, "unexpected task %s", task.ID)
}

func storeStaleAttempt(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	info := b.submit("a", Payload{})
	_, err := b.store.Finish(ctx, info.ID, 0, taskqueue.Outcome{Status: taskqueue.StatusSucceeded})
	require.ErrorIs(t, err, taskqueue.ErrLeaseLost, "a pending task has no claim to finish")

	// A claim that was released and claimed again is stale, although the
	// attempt number is the same.
	stale := claim(t, b.store)
	_, err = b.store.Release(ctx, stale.ID, stale.ClaimToken)
	require.NoError(t, err)
	task := claim(t, b.store)
	require.Equal(t, stale.Attempt, task.Attempt)
	require.NotEqual(t, stale.ClaimToken, task.ClaimToken)
	for _, token := range []int64{stale.ClaimToken, task.ClaimToken + 1} {
		_, err := b.store.Finish(ctx, task.ID, token, taskqueue.Outcome{Status: taskqueue.StatusSucceeded})
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost)
		_, err = b.store.Retry(ctx, task.ID, token, 0, "x")
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost)
		_, err = b.store.Release(ctx, task.ID, token)
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost)
		require.ErrorIs(t, b.store.Progress(ctx, task.ID, token, taskqueue.Progress{Percent: 1}), taskqueue.ErrLeaseLost)
		_, err = b.store.Heartbeat(ctx, task.ID, token)
		require.ErrorIs(t, err, taskqueue.ErrLeaseLost)
	}
	for _, bad := range []taskqueue.Progress{{Percent: -1}, {Percent: 101}, {Percent: 1, Message: strings.Repeat("m", taskqueue.MaxProgressMessage+1)}} {
		require.Error(t, b.store.Progress(ctx, task.ID, task.ClaimToken, bad), "progress %d%%, %d bytes", bad.Percent, len(bad.Message))
	}
	require.NoError(t, b.store.Progress(ctx, task.ID, task.ClaimToken, taskqueue.Progress{Percent: 5, Message: "m"}))
	canceled, err := b.store.Heartbeat(ctx, task.ID, task.ClaimToken)
	require.NoError(t, err)
	require.False(t, canceled)
	done, err := b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded, Result: json.RawMessage(`{"double":0}`)})
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
	require.Equal(t, taskqueue.Progress{Percent: 5, Message: "m"}, done.Progress)
	_, err = b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusFailed, Error: "late"})
	require.ErrorIs(t, err, taskqueue.ErrLeaseLost, "a task finishes once")
	got, err := b.store.Get(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, done, got)
}

func storeReleaseRetry(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	info := b.submit("a", Payload{})
	task := claim(t, b.store)
	released, err := b.store.Release(ctx, task.ID, task.ClaimToken)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusPending, released.Status)
	require.Equal(t, 0, released.Attempt)

	task = claim(t, b.store)
	require.Equal(t, info.ID, task.ID)
	require.Equal(t, 1, task.Attempt, "the released attempt was not counted")

	start := time.Now()
	retried, err := b.store.Retry(ctx, task.ID, task.ClaimToken, 90*time.Second, "try again")
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusPending, retried.Status)
	require.Equal(t, "try again", retried.Error)
	requireTime(t, start.Add(90*time.Second), retried.RunAt, "RunAt of the retry")
	task, err = b.store.Claim(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, 2, task.Attempt)
	requireTime(t, start.Add(90*time.Second), time.Now(), "claimed when due")
	st, err := b.store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Running: 1}, st)
}

func storeCancelRequest(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	pending, err := b.store.Cancel(ctx, b.submit("a", Payload{}).ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusCanceled, pending.Status, "a pending task is canceled at once")

	for _, end := range []string{"finish", "retry", "release"} {
		info := b.submit("a", Payload{})
		task := claim(t, b.store)
		require.Equal(t, info.ID, task.ID)
		got, err := b.store.Cancel(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusRunning, got.Status, "the request is recorded, the task still runs")
		canceled, err := b.store.Heartbeat(ctx, task.ID, task.ClaimToken)
		require.NoError(t, err)
		require.True(t, canceled, "Heartbeat reports the request")
		var out taskqueue.Info
		switch end {
		case "finish":
			out, err = b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded, Result: json.RawMessage(`1`)})
		case "retry":
			out, err = b.store.Retry(ctx, task.ID, task.ClaimToken, 0, "x")
		case "release":
			out, err = b.store.Release(ctx, task.ID, task.ClaimToken)
		}
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusCanceled, out.Status, end)
		require.Empty(t, out.Result, end)
		_, err = b.store.Cancel(ctx, task.ID)
		require.ErrorIs(t, err, taskqueue.ErrFinished, end)
	}
	_, err = b.store.Cancel(ctx, "0000000000000000000000000z")
	require.ErrorIs(t, err, taskqueue.ErrNotFound)
	claimNone(t, b.store)
	st, err := b.store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Canceled: 4}, st)
}

func storeDelete(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	var ids []string
	for range 3 {
		ids = append(ids, b.submit("a", Payload{}).ID)
	}
	keep := b.submit("a", Payload{}, taskqueue.Delay(time.Hour))
	b.submit("b", Payload{})
	running := claim(t, b.store, "b")
	for i, id := range ids {
		_, err := b.store.Cancel(ctx, id)
		require.NoError(t, err)
		if i == 0 {
			time.Sleep(time.Minute)
		}
	}
	cut := time.Now()
	n, err := b.store.DeleteFinishedBefore(ctx, cut)
	require.NoError(t, err)
	require.Equal(t, 1, n, "only the task finished a minute before")
	_, err = b.store.Get(ctx, ids[0])
	require.ErrorIs(t, err, taskqueue.ErrNotFound)
	n, err = b.store.DeleteFinishedBefore(ctx, cut.Add(time.Nanosecond))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	got, err := b.store.Get(ctx, keep.ID)
	require.NoError(t, err, "a pending task is never deleted")
	require.Equal(t, taskqueue.StatusPending, got.Status)
	n, err = b.store.DeleteFinishedBefore(ctx, time.Now().Add(1000*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
	got, err = b.store.Get(ctx, running.ID)
	require.NoError(t, err, "a running task is never deleted")
	require.Equal(t, taskqueue.StatusRunning, got.Status)
	st, err := b.store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Pending: 1, Running: 1}, st)
}

func storeCancelRacesFinish(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	endings := map[taskqueue.Status]int{}
	for range 100 {
		b.submit("a", Payload{})
		task := claim(t, b.store)
		var (
			canceled       taskqueue.Info
			cancelErr      error
			finished       taskqueue.Info
			finishErr      error
			cancelReturned = make(chan struct{})
		)
		go func() {
			defer close(cancelReturned)
			canceled, cancelErr = b.store.Cancel(ctx, task.ID)
		}()
		finished, finishErr = b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded, Result: json.RawMessage(`1`)})
		<-cancelReturned
		require.NoError(t, finishErr)
		switch finished.Status {
		case taskqueue.StatusCanceled: // the cancel was recorded first and won
			require.NoError(t, cancelErr)
			require.Equal(t, taskqueue.StatusRunning, canceled.Status)
			require.Empty(t, finished.Result)
		case taskqueue.StatusSucceeded: // the task ended first: the cancel is a no-op
			require.ErrorIs(t, cancelErr, taskqueue.ErrFinished)
			require.Equal(t, taskqueue.StatusSucceeded, canceled.Status)
		default:
			t.Fatalf("Finish ended the task %s", finished.Status)
		}
		got, err := b.store.Get(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, finished, got, "the store holds the ending Finish reported")
		endings[got.Status]++
	}
	t.Logf("endings: %v", endings)
	st, err := b.store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Succeeded: endings[taskqueue.StatusSucceeded], Canceled: endings[taskqueue.StatusCanceled]}, st)
}

func storeUnknownAndDuplicate(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	const unknown = "0000000000000000000000000z"
	_, err := b.store.Get(ctx, unknown)
	require.ErrorIs(t, err, taskqueue.ErrNotFound)
	_, err = b.store.Finish(ctx, unknown, 1, taskqueue.Outcome{Status: taskqueue.StatusSucceeded})
	require.ErrorIs(t, err, taskqueue.ErrNotFound)
	_, err = b.store.Retry(ctx, unknown, 1, 0, "x")
	require.ErrorIs(t, err, taskqueue.ErrNotFound)
	_, err = b.store.Release(ctx, unknown, 1)
	require.ErrorIs(t, err, taskqueue.ErrNotFound)
	require.ErrorIs(t, b.store.Progress(ctx, unknown, 1, taskqueue.Progress{Percent: 1}), taskqueue.ErrNotFound)
	_, err = b.store.Heartbeat(ctx, unknown, 1)
	require.ErrorIs(t, err, taskqueue.ErrNotFound)

	info := b.submit("a", Payload{N: 1})
	dup := taskqueue.Task{Info: taskqueue.Info{ID: info.ID, Kind: "b", MaxAttempts: 1}, Payload: json.RawMessage(`{"n":2}`)}
	_, inserted, err := b.store.Insert(ctx, dup)
	require.Error(t, err, "a duplicate id is refused")
	require.False(t, inserted)
	task := claim(t, b.store)
	require.Equal(t, "a", task.Kind, "the first task is untouched")
	require.JSONEq(t, `{"n":1}`, string(task.Payload))
	claimNone(t, b.store)
}
