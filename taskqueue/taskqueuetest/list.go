package taskqueuetest

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func init() {
	register(
		behaviour{"List pages newest first through every task exactly once", listPages},
		behaviour{"List filters by status and kind", listFilters},
		behaviour{"List rejects bad limits, filters and cursors", listRejects},
		behaviour{"finished tasks are kept for Retention exactly, then dropped", retention},
	)
}

// listAll pages through f with limit and returns the ids in order.
func listAll(t *testing.T, b *bundle, f taskqueue.Filter, limit int) []string {
	t.Helper()
	var ids []string
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10_000, "paging does not end")
		page, err := b.r.List(context.Background(), f, cursor, limit)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Items), limit)
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if !page.HasMore {
			require.Empty(t, page.NextCursor)
			return ids
		}
		require.Len(t, page.Items, limit, "a page before the last is full")
		cursor = page.NextCursor
	}
}

func listPages(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) { handle(t, r, "double", double) })
	var want []string
	for i := range 25 {
		want = append([]string{b.submit("double", Payload{N: i}).ID}, want...) // newest first
		if i%3 == 0 {
			time.Sleep(time.Millisecond) // some share a CreatedAt, some do not
		}
	}
	// Ties on CreatedAt are broken by id, descending.
	sortNewestFirst(t, b, want)
	for _, limit := range []int{1, 2, 7, 25, 26, 1000} {
		require.Equal(t, want, listAll(t, b, taskqueue.Filter{}, limit), "limit %d", limit)
	}

	// A page cursor stays valid, and consistent, while tasks are added.
	page, err := b.r.List(context.Background(), taskqueue.Filter{}, "", 10)
	require.NoError(t, err)
	b.submit("double", Payload{N: 99})
	rest, err := b.r.List(context.Background(), taskqueue.Filter{}, page.NextCursor, 100)
	require.NoError(t, err)
	var got []string
	for _, it := range append(page.Items, rest.Items...) {
		got = append(got, it.ID)
	}
	require.Equal(t, want, got, "a task added after the first page is on no later page")

	empty, err := b.r.List(context.Background(), taskqueue.Filter{Kind: "none"}, "", 10)
	require.NoError(t, err)
	require.NotNil(t, empty.Items)
	require.Empty(t, empty.Items)
	require.False(t, empty.HasMore)
}

// sortNewestFirst orders ids as List must: CreatedAt descending, then id
// descending.
func sortNewestFirst(t *testing.T, b *bundle, ids []string) {
	t.Helper()
	created := map[string]time.Time{}
	for _, id := range ids {
		created[id] = b.get(id).CreatedAt
	}
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0; j-- {
			a, c := ids[j-1], ids[j]
			ca, cc := created[a], created[c]
			if ca.Before(cc) || (ca.Equal(cc) && a < c) {
				ids[j-1], ids[j] = c, a
			}
		}
	}
}

func listFilters(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "ok", double)
		handle(t, r, "fail", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			return Result{}, taskqueue.Permanent(errBoom)
		})
	})
	var okIDs, failIDs []string
	for range 3 {
		okIDs = append(okIDs, b.submit("ok", Payload{}).ID)
		failIDs = append(failIDs, b.submit("fail", Payload{}).ID)
		time.Sleep(time.Second)
	}
	pendingOK := b.submit("ok", Payload{}, taskqueue.Delay(time.Hour)).ID
	b.start()
	for i := range okIDs {
		b.wait(okIDs[i])
		b.wait(failIDs[i])
	}
	rev := func(ids ...string) []string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[len(ids)-1-i] = id
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		filter taskqueue.Filter
		want   []string
	}{
		{"by kind", taskqueue.Filter{Kind: "fail"}, rev(failIDs...)},
		{"by status", taskqueue.Filter{Status: taskqueue.StatusSucceeded}, rev(okIDs...)},
		{"by status and kind", taskqueue.Filter{Status: taskqueue.StatusPending, Kind: "ok"}, []string{pendingOK}},
		{"by status with no match", taskqueue.Filter{Status: taskqueue.StatusRunning}, nil},
		{"by both with no match", taskqueue.Filter{Status: taskqueue.StatusFailed, Kind: "ok"}, nil},
	} {
		for _, limit := range []int{1, 2, 10} {
			require.Equal(t, tc.want, listAll(t, b, tc.filter, limit), "%s, limit %d", tc.name, limit)
		}
	}
}

func listRejects(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) { handle(t, r, "double", double) })
	for range 3 {
		b.submit("double", Payload{})
	}
	page, err := b.r.List(context.Background(), taskqueue.Filter{}, "", 1)
	require.NoError(t, err)
	good := page.NextCursor
	require.NotEmpty(t, good)

	for _, tc := range []struct {
		name     string
		filter   taskqueue.Filter
		cursor   string
		limit    int
		sentinel error
	}{
		{"zero limit", taskqueue.Filter{}, "", 0, nil},
		{"negative limit", taskqueue.Filter{}, "", -1, nil},
		{"huge limit", taskqueue.Filter{}, "", 1_000_001, nil},
		{"invalid status", taskqueue.Filter{Status: 99}, "", 10, nil},
		{"garbage cursor", taskqueue.Filter{}, "not a cursor", 10, taskqueue.ErrInvalidCursor},
		{"truncated cursor", taskqueue.Filter{}, good[:len(good)-1], 10, taskqueue.ErrInvalidCursor},
		{"extended cursor", taskqueue.Filter{}, good + "A", 10, taskqueue.ErrInvalidCursor},
		{"padded cursor", taskqueue.Filter{}, good + "=", 10, taskqueue.ErrInvalidCursor},
		{"std base64 cursor", taskqueue.Filter{}, "+" + good[1:], 10, taskqueue.ErrInvalidCursor},
	} {
		_, err := b.r.List(context.Background(), tc.filter, tc.cursor, tc.limit)
		require.Error(t, err, tc.name)
		if tc.sentinel != nil {
			require.ErrorIs(t, err, tc.sentinel, tc.name)
		}
	}
}

func retention(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{Retention: time.Hour}, func(r *taskqueue.Runner) { handle(t, r, "double", double) }).start()
	done := b.wait(b.submit("double", Payload{N: 1}).ID)
	time.Sleep(time.Second)
	pending := b.submit("double", Payload{}, taskqueue.Delay(3*time.Hour))
	finishedAt := done.FinishedAt

	time.Sleep(time.Until(finishedAt.Add(time.Hour - time.Nanosecond)))
	require.Equal(t, done, b.get(done.ID), "still there 1ns before Retention")
	all := listAll(t, b, taskqueue.Filter{}, 10)
	require.Equal(t, []string{pending.ID, done.ID}, all)

	time.Sleep(time.Nanosecond)
	_, err := b.r.Get(context.Background(), done.ID)
	require.ErrorIs(t, err, taskqueue.ErrNotFound, "gone at Retention, not pending")
	require.Equal(t, []string{pending.ID}, listAll(t, b, taskqueue.Filter{}, 10), "List hides it too")
	require.ErrorIs(t, b.r.Cancel(context.Background(), done.ID), taskqueue.ErrNotFound)
	_, err = b.r.Wait(context.Background(), done.ID)
	require.ErrorIs(t, err, taskqueue.ErrNotFound)

	// The sweeper deletes it from the store within Retention/4.
	time.Sleep(15 * time.Minute)
	synctest.Wait()
	st, err := b.r.Stats(context.Background())
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Pending: 1}, st, "deleted from the store, the pending task kept")
	_, err = b.store.Get(context.Background(), done.ID)
	require.ErrorIs(t, err, taskqueue.ErrNotFound)
}
