package txnmysql_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/txn"
	"github.com/asynckit/asynckit/txn/txnmysql"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// setup returns a fresh MariaDB database with rows 1 and 2 in acc.
func setup(t *testing.T) *sql.DB {
	t.Helper()
	db := testenv.MySQL(t)
	ctx := context.Background()
	_, err := db.ExecContext(ctx, "CREATE TABLE acc (id INT PRIMARY KEY, v INT NOT NULL) ENGINE=InnoDB")
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, "INSERT INTO acc (id, v) VALUES (1, 0), (2, 0)")
	require.NoError(t, err)
	return db
}

func values(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), "SELECT v FROM acc ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		require.NoError(t, rows.Scan(&v))
		vs = append(vs, v)
	}
	require.NoError(t, rows.Err())
	return vs
}

// TestDeadlockIsRetried locks rows 1 and 2 in opposite orders from two
// transactions that wait for each other between their two updates: InnoDB
// kills one with error 1213 and Do runs it again.
func TestDeadlockIsRetried(t *testing.T) {
	db := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var mu sync.Mutex
	var retried []error
	var bothLocked sync.WaitGroup
	bothLocked.Add(2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, order := range [][2]int{{1, 2}, {2, 1}} {
		wg.Go(func() {
			first := true
			errs[i] = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = ?", order[0]); err != nil {
					return err
				}
				if first {
					first = false
					bothLocked.Done()
					bothLocked.Wait()
				}
				_, err := tx.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = ?", order[1])
				return err
			}, txn.RetryIf(txnmysql.Retryable), txn.Backoff(time.Millisecond, time.Millisecond),
				txn.OnRetry(func(_ int, err error) {
					mu.Lock()
					retried = append(retried, err)
					mu.Unlock()
				}))
		})
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Len(t, retried, 1)
	var me *mysql.MySQLError
	require.ErrorAs(t, retried[0], &me)
	require.Equal(t, uint16(1213), me.Number)
	require.Equal(t, []int{2, 2}, values(t, db), "both transactions applied whole, once")
}

// TestDeadlockInNestedDoRetriesTheWholeTransaction makes the deadlock
// happen inside a nested Do whose error the enclosing fn ignores, as a batch
// would. InnoDB has rolled back the whole transaction, savepoint included,
// so committing what is left would lose the first update: Do must retry
// the whole fn instead.
func TestDeadlockInNestedDoRetriesTheWholeTransaction(t *testing.T) {
	db := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var mu sync.Mutex
	var retried, nestedErrs []error
	var bothLocked sync.WaitGroup
	bothLocked.Add(2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, order := range [][2]int{{1, 2}, {2, 1}} {
		wg.Go(func() {
			first := true
			errs[i] = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = ?", order[0]); err != nil {
					return err
				}
				if first {
					first = false
					bothLocked.Done()
					bothLocked.Wait()
				}
				err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = ?", order[1])
					return err
				})
				if err != nil {
					mu.Lock()
					nestedErrs = append(nestedErrs, err)
					mu.Unlock()
				}
				return nil // ignored, as a batch reports and goes on
			}, txn.RetryIf(txnmysql.Retryable), txn.Backoff(time.Millisecond, time.Millisecond),
				txn.OnRetry(func(_ int, err error) {
					mu.Lock()
					retried = append(retried, err)
					mu.Unlock()
				}))
		})
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Len(t, nestedErrs, 1, "the nested Do returned the deadlock to its caller")
	require.Len(t, retried, 1)
	var me *mysql.MySQLError
	require.ErrorAs(t, retried[0], &me)
	require.Equal(t, uint16(1213), me.Number)
	require.Equal(t, []int{2, 2}, values(t, db), "both transactions applied whole, once")
}

// TestLockWaitTimeoutIsRetried holds a row lock in another transaction
// until Do's first attempt has timed out waiting for it (error 1205), then
// lets the retry through.
func TestLockWaitTimeoutIsRetried(t *testing.T) {
	db := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	holder, err := db.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback() }()
	_, err = holder.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = 1")
	require.NoError(t, err)

	var retried []error
	err = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "SET SESSION innodb_lock_wait_timeout = 1"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = 1")
		return err
	}, txn.RetryIf(txnmysql.Retryable), txn.Backoff(time.Millisecond, time.Millisecond),
		txn.OnRetry(func(_ int, err error) {
			retried = append(retried, err)
			require.NoError(t, holder.Commit())
		}))
	require.NoError(t, err)
	require.Len(t, retried, 1)
	var me *mysql.MySQLError
	require.ErrorAs(t, retried[0], &me)
	require.Equal(t, uint16(1205), me.Number)
	require.Equal(t, []int{2, 0}, values(t, db))
}

func TestRetryable(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil is not retryable", nil, false},
		{"deadlock", &mysql.MySQLError{Number: 1213}, true},
		{"lock wait timeout", &mysql.MySQLError{Number: 1205}, true},
		{"snapshot conflict (innodb_snapshot_isolation)", &mysql.MySQLError{Number: 1020}, true},
		{"wrapped deadlock", fmt.Errorf("step 2: %w", &mysql.MySQLError{Number: 1213}), true},
		{"duplicate key is not", &mysql.MySQLError{Number: 1062}, false},
		{"other driver's error is not", errors.New("deadlock"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, txnmysql.Retryable(c.err))
		})
	}
}

func TestConnectionLost(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil is not lost", nil, false},
		{"invalid connection", mysql.ErrInvalidConn, true},
		{"wrapped invalid connection", fmt.Errorf("commit: %w", mysql.ErrInvalidConn), true},
		{"connection killed", &mysql.MySQLError{Number: 1927}, true},
		{"deadlock is not", &mysql.MySQLError{Number: 1213}, false},
		{"bad connection is left to txn's own check", driver.ErrBadConn, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, txnmysql.ConnectionLost(c.err))
		})
	}
}
