package txn_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/txn"
	"github.com/asynckit/asynckit/txn/txnmysql"
)

// dialect is one database the shared suite runs against, with what differs
// between them.
type dialect struct {
	name string
	open func(testing.TB) *sql.DB
	// opts are the options every outermost Do on this database needs.
	opts []txn.Option
	// dollar numbers placeholders $1, $2… instead of ?.
	dollar bool
	// forUpdate is appended to a SELECT that locks the rows it reads.
	forUpdate string
	// transferIsolation is the level the transfer invariant runs at.
	transferIsolation sql.IsolationLevel
	// abortsOnError reports whether any failed statement aborts the whole
	// transaction until it is rolled back (Postgres).
	abortsOnError bool
	// deferredFK reports whether foreign keys can be checked at COMMIT.
	deferredFK bool
	// readOnly reports whether the driver makes ReadOnly() transactions
	// refuse writes (modernc's SQLite driver ignores the flag).
	readOnly bool
	// killQuery, when not empty, is a format that ends, from another
	// connection, the connection whose id connID returned.
	connID, killQuery string
}

func dialects() []dialect {
	return []dialect{
		{
			name:       "sqlite",
			open:       testenv.SQLite,
			deferredFK: true,
		},
		{
			name:              "postgres",
			open:              testenv.Postgres,
			dollar:            true,
			forUpdate:         " FOR UPDATE",
			transferIsolation: sql.LevelSerializable,
			abortsOnError:     true,
			deferredFK:        true,
			readOnly:          true,
			connID:            "SELECT pg_backend_pid()",
			killQuery:         "SELECT pg_terminate_backend(%d)",
		},
		{
			name: "mariadb",
			open: testenv.MySQL,
			opts: []txn.Option{
				txn.RetryIf(txnmysql.Retryable),
				txn.CommitUnknownIf(txnmysql.ConnectionLost),
			},
			forUpdate: " FOR UPDATE",
			readOnly:  true,
			connID:    "SELECT CONNECTION_ID()",
			killQuery: "KILL %d",
		},
	}
}

// q rewrites the ? placeholders of query for d.
func (d dialect) q(query string) string {
	if !d.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// with returns d's options followed by more.
func (d dialect) with(more ...txn.Option) []txn.Option {
	return append(append([]txn.Option(nil), d.opts...), more...)
}

// setup opens a fresh database for d with an items table.
func (d dialect) setup(t *testing.T) *sql.DB {
	t.Helper()
	db := d.open(t)
	_, err := db.ExecContext(context.Background(), "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL)")
	require.NoError(t, err)
	return db
}

// insert adds item id, through From, so it lands in the transaction in ctx
// if there is one.
func (d dialect) insert(ctx context.Context, db *sql.DB, id int) error {
	_, err := txn.From(ctx, db).ExecContext(ctx, d.q("INSERT INTO items (id, name) VALUES (?, ?)"), id, "item "+strconv.Itoa(id))
	return err
}

// ids returns the ids of the committed items, in order.
func (d dialect) ids(t *testing.T, db *sql.DB) []int {
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

// openSQLiteImmediate is testenv.SQLite with modernc's _txlock=immediate, so
// that every read-write transaction takes SQLite's single write lock at
// BEGIN, waiting for it under busy_timeout. Without it, a transaction that
// reads and then writes gets SQLITE_BUSY at once when another holds the
// lock (SQLite does not wait there, as waiting could deadlock), and with 20
// writers some transactions lose every retry.
func openSQLiteImmediate(tb testing.TB) *sql.DB {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "immediate.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = db.Close() })
	require.NoError(tb, db.PingContext(context.Background()))
	return db
}

// transferDialects are the dialects with the locking a read-then-write
// transaction needs on each database: serializable isolation on Postgres,
// SELECT … FOR UPDATE on MariaDB, and BEGIN IMMEDIATE on SQLite.
func transferDialects() []dialect {
	ds := dialects()
	for i := range ds {
		if ds[i].name == "sqlite" {
			ds[i].name = "sqlite-immediate"
			ds[i].open = openSQLiteImmediate
		}
	}
	return ds
}
