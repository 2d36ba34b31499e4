package taskqueuetest

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func init() {
	register(
		behaviour{"cancelling a pending task means it never runs", cancelPending},
		behaviour{"cancelling a running task cancels its ctx and it ends canceled", cancelRunning},
		behaviour{"cancelling a finished task is an ErrFinished no-op", cancelFinished},
	)
}

func cancelPending(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	var runs atomic.Int32
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "count", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			runs.Add(1)
			return Result{}, nil
		})
	})
	now := b.submit("count", Payload{})
	later := b.submit("count", Payload{}, taskqueue.Delay(time.Minute))
	keep := b.submit("count", Payload{})
	start := time.Now()
	require.NoError(t, b.r.Cancel(context.Background(), now.ID))
	require.NoError(t, b.r.Cancel(context.Background(), later.ID))
	for _, id := range []string{now.ID, later.ID} {
		info := b.get(id)
		require.Equal(t, taskqueue.StatusCanceled, info.Status)
		require.Equal(t, 0, info.Attempt)
		requireTime(t, start, info.FinishedAt, "FinishedAt")
		require.Equal(t, id, (<-b.finished).ID, "OnFinish is called for a cancelled pending task")
	}
	b.start()
	require.Equal(t, taskqueue.StatusSucceeded, b.wait(keep.ID).Status)
	time.Sleep(2 * time.Minute)
	synctest.Wait()
	require.Equal(t, int32(1), runs.Load(), "only the task not cancelled ran")
	require.Equal(t, taskqueue.StatusCanceled, b.get(later.ID).Status)
	st, err := b.r.Stats(context.Background())
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Succeeded: 1, Canceled: 2}, st)
}

func cancelRunning(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	causes := make(chan error, 2)
	b := newBundle(t, newStore, taskqueue.Options{MaxAttempts: 3}, func(r *taskqueue.Runner) {
		// The handler returns success after its ctx ends: the task still
		// ends canceled.
		handle(t, r, "obedient", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return Result{Double: 1}, nil
		})
		handle(t, r, "erring", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return Result{}, ctx.Err()
		})
	}).start()
	for _, kind := range []string{"obedient", "erring"} {
		info := b.submit(kind, Payload{})
		synctestWaitStatus(t, b, info.ID, taskqueue.StatusRunning)
		time.Sleep(time.Second)
		require.NoError(t, b.r.Cancel(context.Background(), info.ID))
		require.ErrorIs(t, <-causes, taskqueue.ErrCanceled)
		done := b.wait(info.ID)
		require.Equal(t, taskqueue.StatusCanceled, done.Status, kind)
		require.Equal(t, 1, done.Attempt, "%s: a cancelled task is not retried", kind)
		require.Empty(t, done.Result)
		require.ErrorIs(t, b.r.Cancel(context.Background(), info.ID), taskqueue.ErrFinished)
	}
}

func cancelFinished(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "double", double)
	}).start()
	done := b.wait(b.submit("double", Payload{N: 2}).ID)
	err := b.r.Cancel(context.Background(), done.ID)
	require.ErrorIs(t, err, taskqueue.ErrFinished)
	require.Contains(t, err.Error(), "succeeded")
	require.Equal(t, done, b.get(done.ID), "the task is left as it was")
}
