package txn_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"

	"github.com/asynckit/asynckit/txn"
)

// keepTxDriverName names modernc's SQLite driver with one difference: a
// COMMIT that fails leaves the transaction open, as SQLite itself does
// after SQLITE_BUSY ("the transaction remains active"), instead of rolling
// it back. modernc rolls back there since the version this module
// requires, mattn/go-sqlite3 does only after BUSY, and older drivers do
// not at all; Do must not depend on which one it runs on.
const keepTxDriverName = "sqlite-commit-keeps-tx"

var registerKeepTx sync.Once

// keepTxDriver, keepTxConn and keepTx make up that driver: everything but
// Tx.Commit is modernc's.
type keepTxDriver struct{ sqlite.Driver }

type sqliteConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
}

type keepTxConn struct{ sqliteConn }

type keepTx struct {
	driver.Tx
	conn sqliteConn
}

func (d *keepTxDriver) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return keepTxConn{c.(sqliteConn)}, nil
}

func (c keepTxConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.sqliteConn.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return keepTx{Tx: tx, conn: c.sqliteConn}, nil
}

// Commit sends COMMIT and returns its error, leaving whatever transaction
// SQLite keeps open after a failure as it is.
func (t keepTx) Commit() error {
	_, err := t.conn.ExecContext(context.Background(), "COMMIT", nil)
	return err
}

// TestCommitRefusedNeverLeavesATransactionInThePool makes COMMIT fail with
// SQLITE_BUSY: in rollback-journal mode a writer's COMMIT needs every
// reader gone, and a reader on another connection holds its SHARED lock
// for longer than the busy timeout. Whatever the driver then does with the
// transaction SQLite keeps open, the connection that goes back to the pool
// must not be inside it: the next Do on that pool (one connection, so the
// same one) begins cleanly, and the refused work never appears.
func TestCommitRefusedNeverLeavesATransactionInThePool(t *testing.T) {
	registerKeepTx.Do(func() { sql.Register(keepTxDriverName, &keepTxDriver{}) })
	cases := []struct {
		name   string
		driver string
		// retry lets Do retry the refused commit once the reader is gone,
		// instead of returning it.
		retry bool
		want  []int
	}{
		{"the refused commit is returned and the next Do begins cleanly (driver rolls back)", "sqlite", false, []int{2, 100}},
		{"the refused commit is returned and the next Do begins cleanly (driver keeps the transaction)", keepTxDriverName, false, []int{2, 100}},
		{"the retry of a refused commit begins cleanly (driver rolls back)", "sqlite", true, []int{1, 2, 100}},
		{"the retry of a refused commit begins cleanly (driver keeps the transaction)", keepTxDriverName, true, []int{1, 2, 100}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			dsn := "file:" + filepath.Join(t.TempDir(), "journal.db") + "?_pragma=journal_mode(DELETE)&_pragma=busy_timeout(20)"
			db, err := sql.Open(c.driver, dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			db.SetMaxOpenConns(1)
			reader, err := sql.Open("sqlite", dsn)
			require.NoError(t, err)
			t.Cleanup(func() { _ = reader.Close() })

			_, err = db.ExecContext(ctx, "CREATE TABLE items (id INTEGER PRIMARY KEY)")
			require.NoError(t, err)
			_, err = db.ExecContext(ctx, "INSERT INTO items (id) VALUES (100)")
			require.NoError(t, err)

			// A read left half-done keeps the reader's SHARED lock.
			rtx, err := reader.BeginTx(ctx, nil)
			require.NoError(t, err)
			rows, err := rtx.QueryContext(ctx, "SELECT id FROM items")
			require.NoError(t, err)
			require.True(t, rows.Next())
			letGo := func() {
				require.NoError(t, rows.Close())
				require.NoError(t, rtx.Rollback())
			}

			opts := []txn.Option{txn.MaxAttempts(1)}
			if c.retry {
				opts = []txn.Option{txn.Backoff(time.Millisecond, time.Millisecond), txn.OnRetry(func(int, error) { letGo() })}
			}
			attempts := 0
			err = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				attempts++
				_, err := tx.ExecContext(ctx, "INSERT INTO items (id) VALUES (1)")
				return err
			}, opts...)
			if c.retry {
				require.NoError(t, err, "the retry begins on a connection outside any transaction")
				require.Equal(t, 2, attempts)
			} else {
				var ce *txn.CommitError
				require.ErrorAs(t, err, &ce)
				require.False(t, ce.Unknown, "SQLite answered BUSY: nothing was committed")
				require.True(t, txn.Retryable(err))
				letGo()
			}

			err = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				_, err := tx.ExecContext(ctx, "INSERT INTO items (id) VALUES (2)")
				return err
			}, txn.MaxAttempts(1))
			require.NoError(t, err, "the next Do on the pool begins outside any transaction")
			require.Equal(t, c.want, readIDs(t, reader), "seen from another connection")
			require.Zero(t, db.Stats().InUse)
		})
	}
}

// readIDs returns the ids in the items table, in order.
func readIDs(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "SELECT id FROM items ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	ids := []int{}
	for rows.Next() {
		var id int
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	return ids
}
