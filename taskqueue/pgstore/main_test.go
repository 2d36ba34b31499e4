package pgstore_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup returns a *sql.DB on a fresh, migrated schema, and the schema's name.
func setup(t testing.TB) (*sql.DB, string) {
	t.Helper()
	db := testenv.Postgres(t)
	var schema string
	require.NoError(t, db.QueryRowContext(context.Background(), "SELECT current_schema()").Scan(&schema))
	require.NoError(t, pgstore.Migrate(context.Background(), db, schema))
	return db, schema
}

// open returns a Store over db in schema with opts, closed at cleanup.
func open(t testing.TB, db *sql.DB, schema string, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	opts.Schema = schema
	s, err := pgstore.New(db, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}
