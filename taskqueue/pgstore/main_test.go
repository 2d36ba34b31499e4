package pgstore_test

import (
	"context"
	"database/sql"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/taskqueue"
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

// connConfig returns a connection config for schema, reaching Postgres at
// addr ("host:port") when addr is not empty, as another process would.
func connConfig(t testing.TB, schema, addr string) *pgx.ConnConfig {
	t.Helper()
	cfg := testenv.PostgresConfig(t)
	cfg.RuntimeParams["search_path"] = schema
	if addr != "" {
		host, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		p, err := strconv.Atoi(port)
		require.NoError(t, err)
		cfg.Host, cfg.Port, cfg.Fallbacks = host, uint16(p), nil
	}
	return cfg
}

// connect opens a *sql.DB of its own on schema (see connConfig), closed at
// cleanup.
func connect(t testing.TB, schema, addr string) *sql.DB {
	t.Helper()
	db := stdlib.OpenDB(*connConfig(t, schema, addr))
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// args is the payload of the tests' tasks.
type args struct {
	N int `json:"n"`
}

// runner returns a Runner over store with opts, shut down at cleanup, with
// handlers registered by register.
func runner(t testing.TB, store taskqueue.Store, opts taskqueue.Options, register func(r *taskqueue.Runner)) *taskqueue.Runner {
	t.Helper()
	opts.Store = store
	r, err := taskqueue.New(opts)
	require.NoError(t, err)
	register(r)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
	})
	return r
}

// eventually polls cond every few milliseconds until it holds, and fails
// the test if it does not within d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// addrOf returns the "host:port" that cfg reaches.
func addrOf(cfg *pgx.ConnConfig) string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
}

// newPool opens a pgx pool on schema, closed at cleanup.
func newPool(t testing.TB, schema string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig("")
	require.NoError(t, err)
	cfg.ConnConfig = connConfig(t, schema, "")
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}
