package txn_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/txn"
)

// TestBackoff checks the waits between attempts on the fake clock of a
// synctest bubble, where only timers move time, so each gap between two
// attempts is exactly the backoff Do chose.
func TestBackoff(t *testing.T) {
	retryIf := txn.RetryIf(func(err error) bool { return errors.Is(err, errRetry) })
	cases := []struct {
		name string
		opts []txn.Option
		// caps are the upper bounds of the waits before each retry; each
		// wait must be between half its cap and its cap.
		caps []time.Duration
	}{
		{
			name: "waits double from base up to max, with jitter in the upper half",
			opts: []txn.Option{txn.Backoff(100*time.Millisecond, 300*time.Millisecond), txn.MaxAttempts(5)},
			caps: ms(100, 200, 300, 300),
		},
		{
			name: "defaults are 10 attempts from 5ms up to 1s",
			caps: ms(5, 10, 20, 40, 80, 160, 320, 640, 1000),
		},
		{
			name: "a single attempt never waits",
			opts: []txn.Option{txn.MaxAttempts(1)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				db := testenv.SQLite(t)
				var starts []time.Time
				err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
					starts = append(starts, time.Now())
					return errRetry
				}, append([]txn.Option{retryIf}, c.opts...)...)
				require.ErrorIs(t, err, errRetry)
				require.Len(t, starts, len(c.caps)+1)
				for i, limit := range c.caps {
					gap := starts[i+1].Sub(starts[i])
					require.GreaterOrEqual(t, gap, limit/2, "wait before retry %d", i+1)
					require.LessOrEqual(t, gap, limit, "wait before retry %d", i+1)
				}
			})
		})
	}
}

func ms(ns ...int) []time.Duration {
	ds := make([]time.Duration, len(ns))
	for i, n := range ns {
		ds[i] = time.Duration(n) * time.Millisecond
	}
	return ds
}

func TestBackoffStopsWhenTheContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := testenv.SQLite(t)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		calls := 0
		err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			return errRetry
		}, txn.RetryIf(func(err error) bool { return errors.Is(err, errRetry) }), txn.Backoff(time.Hour, time.Hour))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, errRetry, "the error that caused the retry is kept")
		require.Equal(t, 1, calls)
		require.Equal(t, time.Minute, time.Since(start), "Do returns as soon as ctx ends")
	})
}

// TestInvalidInput checks that bad arguments are errors returned before
// anything begins, and that From panics with a clear message.
func TestInvalidInput(t *testing.T) {
	db := testenv.SQLite(t)
	ctx := context.Background()
	noop := func(context.Context, *sql.Tx) error { return nil }
	var nilCtx context.Context // a caller's mistake, made on purpose
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil context", txn.Do(nilCtx, db, noop), "txn: nil context"},
		{"nil db", txn.Do(ctx, nil, noop), "txn: nil *sql.DB"},
		{"nil fn", txn.Do(ctx, db, nil), "txn: nil fn"},
		{"nil option", txn.Do(ctx, db, noop, nil), "txn: nil Option"},
		{"zero attempts", txn.Do(ctx, db, noop, txn.MaxAttempts(0)), "txn: MaxAttempts(0): must be at least 1"},
		{"unknown isolation", txn.Do(ctx, db, noop, txn.Isolation(sql.IsolationLevel(99))), "txn: unknown isolation level 99"},
		{"zero backoff", txn.Do(ctx, db, noop, txn.Backoff(0, time.Second)), "txn: Backoff base 0s: must be above zero"},
		{"backoff max below base", txn.Do(ctx, db, noop, txn.Backoff(time.Second, time.Millisecond)), "txn: Backoff max 1ms is below base 1s"},
		{"nil RetryIf", txn.Do(ctx, db, noop, txn.RetryIf(nil)), "txn: RetryIf(nil)"},
		{"nil CommitUnknownIf", txn.Do(ctx, db, noop, txn.CommitUnknownIf(nil)), "txn: CommitUnknownIf(nil)"},
		{"nil OnRetry", txn.Do(ctx, db, noop, txn.OnRetry(nil)), "txn: OnRetry(nil)"},
		{"AfterCommit nil hook", txn.AfterCommit(ctx, nil), "txn: nil hook"},
		{"AfterRollback nil hook", txn.AfterRollback(ctx, nil), "txn: nil hook"},
		{"AfterCommit nil context", txn.AfterCommit(nilCtx, func(context.Context) {}), "txn: nil context"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.EqualError(t, c.err, c.want)
		})
	}
	require.Zero(t, db.Stats().OpenConnections-db.Stats().Idle, "no transaction was begun")
	require.PanicsWithValue(t, "txn: From with a nil *sql.DB", func() { txn.From(ctx, nil) })
	require.PanicsWithValue(t, "txn: From with a nil context", func() { txn.From(nilCtx, db) })
}

// TestHooksOutsideATransaction checks the documented choice: AfterCommit
// runs at once, AfterRollback is dropped, and a panic is an error.
func TestHooksOutsideATransaction(t *testing.T) {
	ctx := context.Background()
	ran := false
	require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { ran = true }))
	require.True(t, ran, "AfterCommit outside a transaction runs at once")

	ran = false
	require.NoError(t, txn.AfterRollback(ctx, func(context.Context) { ran = true }))
	require.False(t, ran, "nothing can roll back outside a transaction")

	err := txn.AfterCommit(ctx, func(context.Context) { panic("hook") })
	var he *txn.HookError
	require.ErrorAs(t, err, &he)
	require.True(t, he.Committed)
	require.Equal(t, "hook", he.Panics[0].Value)
	require.EqualError(t, err, "txn: committed, but 1 hook(s) panicked; hook")
}
