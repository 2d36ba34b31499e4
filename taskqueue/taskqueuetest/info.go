package taskqueuetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func init() {
	register(
		behaviour{"store: Version counts each change of a task's Info, and Get agrees", storeVersion},
		behaviour{"store: StatsByKind counts each kind's tasks by status", storeStatsByKind},
	)
}

func storeVersion(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	// version checks that info has Version want, and that Get says so too.
	version := func(info taskqueue.Info, want int64, what string) {
		t.Helper()
		require.Equal(t, want, info.Version, what)
		got, err := b.store.Get(ctx, info.ID)
		require.NoError(t, err)
		require.Equal(t, want, got.Version, "Get after "+what)
	}

	info := b.submit("a", Payload{})
	version(info, 1, "Insert")
	task := claim(t, b.store)
	version(task.Info, 2, "Claim")
	require.NoError(t, b.store.Progress(ctx, task.ID, task.ClaimToken, taskqueue.Progress{Percent: 10}))
	got, err := b.store.Get(ctx, task.ID)
	require.NoError(t, err)
	version(got, 3, "Progress")
	_, err = b.store.Heartbeat(ctx, task.ID, task.ClaimToken)
	require.NoError(t, err)
	version(got, 3, "Heartbeat, which changes nothing visible")
	retried, err := b.store.Retry(ctx, task.ID, task.ClaimToken, 0, "again")
	require.NoError(t, err)
	version(retried, 4, "Retry")
	task = claim(t, b.store)
	version(task.Info, 5, "the second Claim")
	released, err := b.store.Release(ctx, task.ID, task.ClaimToken)
	require.NoError(t, err)
	version(released, 6, "Release")
	task = claim(t, b.store)
	version(task.Info, 7, "the third Claim")
	requested, err := b.store.Cancel(ctx, task.ID)
	require.NoError(t, err)
	version(requested, 7, "a cancel request, which changes nothing visible")
	ended, err := b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded, Result: json.RawMessage(`1`)})
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusCanceled, ended.Status)
	version(ended, 8, "the Finish that the request turned into a cancel")
	_, err = b.store.Cancel(ctx, task.ID)
	require.ErrorIs(t, err, taskqueue.ErrFinished)
	version(ended, 8, "a Cancel of a finished task")

	pending, err := b.store.Cancel(ctx, b.submit("a", Payload{}).ID)
	require.NoError(t, err)
	version(pending, 2, "the Cancel of a pending task")

	b.submit("b", Payload{})
	task = claim(t, b.store, "b")
	done, err := b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusFailed, Error: "no"})
	require.NoError(t, err)
	version(done, 3, "Finish")

	again, inserted, err := b.store.Insert(ctx, taskqueue.Task{Info: taskqueue.Info{ID: "0000000000000000000000000a", Kind: "a", MaxAttempts: 1, UniqueKey: "k"}, Payload: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.True(t, inserted)
	same, inserted, err := b.store.Insert(ctx, taskqueue.Task{Info: taskqueue.Info{ID: "0000000000000000000000000b", Kind: "a", MaxAttempts: 1, UniqueKey: "k"}, Payload: json.RawMessage(`{}`)})
	require.NoError(t, err)
	require.False(t, inserted)
	require.Equal(t, again.ID, same.ID)
	version(same, 1, "an Insert that found the unique key held")
}

func storeStatsByKind(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	kc, ok := b.store.(taskqueue.KindCounter)
	if !ok {
		t.Skipf("%T is not a taskqueue.KindCounter", b.store)
	}
	byKind := func() map[string]taskqueue.Stats {
		t.Helper()
		got, err := kc.StatsByKind(ctx)
		require.NoError(t, err)
		return got
	}
	require.Empty(t, byKind())
	for range 3 {
		b.submit("a", Payload{})
	}
	canceled := b.submit("b", Payload{})
	_, err := b.store.Cancel(ctx, canceled.ID)
	require.NoError(t, err)
	b.submit("b", Payload{})
	task := claim(t, b.store, "a")
	_, err = b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded, Result: json.RawMessage(`1`)})
	require.NoError(t, err)
	claim(t, b.store, "a")
	require.Equal(t, map[string]taskqueue.Stats{
		"a": {Pending: 1, Running: 1, Succeeded: 1},
		"b": {Pending: 1, Canceled: 1},
	}, byKind())
	total, err := b.store.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Pending: 2, Running: 1, Succeeded: 1, Canceled: 1}, total, "the kinds sum to Stats")

	time.Sleep(time.Minute)
	_, err = b.store.DeleteFinishedBefore(ctx, time.Now())
	require.NoError(t, err)
	require.Equal(t, map[string]taskqueue.Stats{"a": {Pending: 1, Running: 1}, "b": {Pending: 1}}, byKind(), "deleted tasks are not counted")
}
