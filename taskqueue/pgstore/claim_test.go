package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// A claim walks the claim index from its first due task and stops, however
// wrong the table's statistics are: here the table has never been
// analyzed, so the planner would guess a handful of pending tasks and,
// left to itself, read all 3,000 through a bitmap and sort them. The count
// of index entries the claim read shows which it did.
func TestClaimReadsOnlyWhatItTakesWhateverTheStatistics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, schema := setup(t)
	store := open(t, db, schema, pgstore.Options{DisableListener: true})
	r := idle(t, store)
	first, err := r.Submit(ctx, "job", args{})
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO tasks (id, kind, max_attempts, payload, created_at, run_at)
		SELECT 'bulk-' || g, 'job', 1, '{}', $1, $1 FROM generate_series(1, 3000) g`, time.Now())
	require.NoError(t, err)
	// One connection, so that its own statistics can be flushed and read.
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	defer conn.Close()
	indexReads := func() (n int64) {
		_, err := conn.ExecContext(ctx, "SELECT pg_stat_force_next_flush()")
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "SELECT pg_stat_clear_snapshot()")
		require.NoError(t, err)
		require.NoError(t, conn.QueryRowContext(ctx,
			`SELECT idx_tup_read FROM pg_stat_user_indexes WHERE schemaname = $1 AND indexrelname = 'tasks_claim'`, schema).Scan(&n))
		return n
	}
	before := indexReads()
	now := time.Now()
	var id string
	require.NoError(t, conn.QueryRowContext(ctx, `SELECT (task).id FROM claim_due($1, 1, $2, $3)`,
		now, now.Add(time.Minute), []string{"job"}).Scan(&id))
	require.Equal(t, first.ID, id, "the first due task")
	read := indexReads() - before
	require.Less(t, read, int64(100), "claiming one task of 3,000 read %d claim index entries", read)

	task := claimOne(t, store)
	require.Equal(t, "bulk-1", task.ID, "claims go on in due order")
	require.Equal(t, taskqueue.StatusRunning, task.Status)
}
