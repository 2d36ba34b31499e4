package txn_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"modernc.org/sqlite"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/txn"
)

// retryLog records the retries of Do calls made from several goroutines.
type retryLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *retryLog) option() txn.Option {
	return txn.OnRetry(func(_ int, err error) {
		l.mu.Lock()
		l.errs = append(l.errs, err)
		l.mu.Unlock()
	})
}

func (l *retryLog) get() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// TestPostgresSerializationConflictIsRetried makes two serializable
// transactions read the same table, waits until both have read, and lets
// both insert a row computed from what they read: a write skew that
// Postgres refuses for one of them. Do retries that one, which then sees
// the other's row.
func TestPostgresSerializationConflictIsRetried(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := db.ExecContext(ctx, "CREATE TABLE seq (v INTEGER NOT NULL)")
	require.NoError(t, err)

	var log retryLog
	var bothRead sync.WaitGroup
	bothRead.Add(2)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	finished := [2]chan struct{}{make(chan struct{}), make(chan struct{})}
	for i := range 2 {
		// The loser's retry waits for the winner to finish, so that it
		// cannot collide with it a second time.
		waitForOther := txn.OnRetry(func(int, error) {
			select {
			case <-finished[1-i]:
			case <-ctx.Done():
			}
		})
		wg.Go(func() {
			defer close(finished[i])
			first := true
			errs[i] = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				var n int
				if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM seq").Scan(&n); err != nil {
					return err
				}
				if first {
					first = false
					bothRead.Done()
					bothRead.Wait()
				}
				_, err := tx.ExecContext(ctx, "INSERT INTO seq (v) VALUES ($1)", n+1)
				return err
			}, txn.Isolation(sql.LevelSerializable), txn.Backoff(time.Millisecond, time.Millisecond), log.option(), waitForOther)
		})
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])

	retried := log.get()
	require.Len(t, retried, 1, "exactly one transaction loses, once")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, retried[0], &pgErr)
	require.Equal(t, "40001", pgErr.SQLState())
	require.True(t, txn.Retryable(retried[0]))

	var got []int
	rows, err := db.QueryContext(ctx, "SELECT v FROM seq ORDER BY v")
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var v int
		require.NoError(t, rows.Scan(&v))
		got = append(got, v)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []int{1, 2}, got, "the retried transaction saw the winner's row")
}

// TestPostgresDeadlockIsRetried updates two rows in opposite orders from two
// transactions that wait for each other between their updates: Postgres
// breaks the deadlock with SQLSTATE 40P01 and Do runs the victim again.
func TestPostgresDeadlockIsRetried(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, stmt := range []string{
		"CREATE TABLE acc (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
		"INSERT INTO acc (id, v) VALUES (1, 0), (2, 0)",
	} {
		_, err := db.ExecContext(ctx, stmt)
		require.NoError(t, err)
	}

	var log retryLog
	var bothLocked sync.WaitGroup
	bothLocked.Add(2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, order := range [][2]int{{1, 2}, {2, 1}} {
		wg.Go(func() {
			first := true
			errs[i] = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				// Detect the deadlock sooner than the default second.
				if _, err := tx.ExecContext(ctx, "SET LOCAL deadlock_timeout = '50ms'"); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = $1", order[0]); err != nil {
					return err
				}
				if first {
					first = false
					bothLocked.Done()
					bothLocked.Wait()
				}
				_, err := tx.ExecContext(ctx, "UPDATE acc SET v = v + 1 WHERE id = $1", order[1])
				return err
			}, txn.Backoff(time.Millisecond, time.Millisecond), log.option())
		})
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	retried := log.get()
	require.Len(t, retried, 1)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, retried[0], &pgErr)
	require.Equal(t, "40P01", pgErr.SQLState())

	var a, b int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT (SELECT v FROM acc WHERE id = 1), (SELECT v FROM acc WHERE id = 2)").Scan(&a, &b))
	require.Equal(t, [2]int{2, 2}, [2]int{a, b}, "both transactions applied whole, once")
}

// TestSQLiteBusySnapshotIsRetried starts a deferred transaction with a read,
// lets another connection commit a write, and then writes: SQLite refuses
// the stale snapshot with SQLITE_BUSY_SNAPSHOT, which Do retries.
func TestSQLiteBusySnapshotIsRetried(t *testing.T) {
	db := testenv.SQLite(t)
	ctx := context.Background()
	_, err := db.ExecContext(ctx, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
	require.NoError(t, err)

	var log retryLog
	attempt := 0
	err = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		attempt++
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
			return err
		}
		if attempt == 1 {
			_, err := db.ExecContext(ctx, "INSERT INTO items (id, name) VALUES (100, 'other')")
			require.NoError(t, err)
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO items (id, name) VALUES (?, 'mine')", n+1)
		return err
	}, txn.Backoff(time.Millisecond, time.Millisecond), log.option())
	require.NoError(t, err)
	require.Equal(t, 2, attempt)

	retried := log.get()
	require.Len(t, retried, 1)
	var se *sqlite.Error
	require.ErrorAs(t, retried[0], &se)
	require.Equal(t, 5, se.Code()&0xff, "SQLITE_BUSY, got code %d", se.Code())

	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE id = 2").Scan(&n))
	require.Equal(t, 1, n, "the retry read the other connection's row")
}

// TestRetryable checks the driver-free classifier on the method shapes the
// drivers use, including SQLite's extended result codes.
func TestRetryable(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"nil is not retryable", nil, false},
		{"plain error is not retryable", errors.New("x"), false},
		{"Postgres serialization failure", &pgconn.PgError{Code: "40001"}, true},
		{"Postgres deadlock", &pgconn.PgError{Code: "40P01"}, true},
		{"Postgres unique violation is not", &pgconn.PgError{Code: "23505"}, false},
		{"wrapped Postgres serialization failure", wrap(&pgconn.PgError{Code: "40001"}), true},
		{"joined Postgres deadlock", errors.Join(errors.New("x"), &pgconn.PgError{Code: "40P01"}), true},
		{"SQLite BUSY", sqliteCode(5), true},
		{"SQLite BUSY_SNAPSHOT (extended)", sqliteCode(5 | 2<<8), true},
		{"SQLite LOCKED", sqliteCode(6), true},
		{"SQLite LOCKED_SHAREDCACHE (extended)", sqliteCode(6 | 1<<8), true},
		{"SQLite CONSTRAINT is not", sqliteCode(19), false},
		{"SQLite CONSTRAINT_UNIQUE (extended) is not", sqliteCode(19 | 8<<8), false},
		{"context cancellation is not", context.Canceled, false},
		{"unknown commit is not, whatever its cause", &txn.CommitError{Err: sqliteCode(5), Unknown: true}, false},
		{"known commit failure is classified by its cause", &txn.CommitError{Err: sqliteCode(5)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, txn.Retryable(c.err))
		})
	}
}

func wrap(err error) error { return errors.Join(err) }

// sqliteCode has the method shape of modernc.org/sqlite's *Error, whose
// fields cannot be set from outside that package.
type sqliteCode int

func (c sqliteCode) Error() string { return "sqlite error" }
func (c sqliteCode) Code() int     { return int(c) }
