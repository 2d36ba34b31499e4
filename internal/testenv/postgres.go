package testenv

import (
	"context"
	"database/sql"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgresConfig creates a fresh schema on the server named by DATABASE_URL,
// drops it (with everything in it) at cleanup, and returns a connection
// config whose search_path is that schema. Use it to open a native pgx
// connection or pool; use [Postgres] for database/sql.
func PostgresConfig(tb testing.TB) *pgx.ConnConfig {
	tb.Helper()
	dsn := lookup(tb, EnvPostgres)
	cfg, err := pgx.ParseConfig(dsn)
	must(tb, err, "parse %s", EnvPostgres)
	cfg.ConnectTimeout = connectTimeout

	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	admin, err := pgx.ConnectConfig(ctx, cfg.Copy())
	if err != nil {
		failUnreachable(tb, "Postgres", EnvPostgres, err)
	}
	defer admin.Close(context.Background())

	schema := uniqueName(tb, 63)
	_, err = admin.Exec(ctx, "CREATE SCHEMA "+schema)
	must(tb, err, "create schema %s", schema)
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*connectTimeout)
		defer cancel()
		conn, err := pgx.ConnectConfig(ctx, cfg.Copy())
		if err != nil {
			tb.Errorf("testenv: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("testenv: drop schema %s: %v", schema, err)
		}
	})

	out := cfg.Copy()
	if out.RuntimeParams == nil {
		out.RuntimeParams = map[string]string{}
	}
	out.RuntimeParams["search_path"] = schema
	return out
}

// Postgres returns a *sql.DB (pgx's database/sql driver) connected to the
// server named by DATABASE_URL, with its search_path set to a fresh schema
// unique to the test. Unqualified table names therefore land in that schema.
// At cleanup the pool is closed and then the schema is dropped.
func Postgres(tb testing.TB) *sql.DB {
	tb.Helper()
	cfg := PostgresConfig(tb)
	db := stdlib.OpenDB(*cfg)
	// Registered after PostgresConfig's cleanup, so it runs first: the pool
	// is closed before the schema is dropped.
	tb.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		failUnreachable(tb, "Postgres", EnvPostgres, err)
	}
	return db
}
