// Package pagination_test compares asynckit's keyset pagination with
// LIMIT/OFFSET, the way most listings page, on SQLite and Postgres: one
// 20-row page of a 200,000-row feed, newest first, at depths 1,000, 50,000
// and 190,000.
//
// Each database gets a table of its own (a new SQLite file, a new
// Postgres schema from DATABASE_URL) through internal/testenv, so the
// benchmark shares nothing with tests running beside it. Without
// DATABASE_URL the Postgres half skips, or fails when
// ASYNCKIT_REQUIRE_SERVICES=1.
package pagination_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/pagination"
)

const (
	rows     = 200_000
	pageSize = 20
)

// database is one database compared on: how to open a fresh one, its
// dialect, its column types and the statement that fills the feed.
type database struct {
	name     string
	open     func(testing.TB) *sql.DB
	dialect  pagination.Dialect
	idType   string
	timeType string
	// fill inserts the rows in one statement: id, and a created_at that
	// every two consecutive rows share, so that the keyset needs its
	// second column. Each database makes the rows itself.
	fill string
}

var databases = []database{
	{
		name: "SQLite", open: openSQLite, dialect: pagination.SQLite,
		idType: "INTEGER PRIMARY KEY", timeType: "DATETIME",
		fill: fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)
			INSERT INTO feed SELECT i, strftime('%%Y-%%m-%%d %%H:%%M:%%S', 1772355600 + i / 2, 'unixepoch') || '+00:00' FROM n`, rows),
	},
	{
		name: "Postgres", open: openPostgres, dialect: pagination.Postgres,
		idType: "BIGINT PRIMARY KEY", timeType: "TIMESTAMPTZ",
		fill: fmt.Sprintf(`INSERT INTO feed SELECT i, timestamptz '2026-03-01 09:00:00+00' + (i / 2) * interval '1 second'
			FROM generate_series(1, %d) AS i`, rows),
	},
}

// openSQLite is a new SQLite file on one connection, as a service using
// SQLite would hold it.
func openSQLite(tb testing.TB) *sql.DB {
	db := testenv.SQLite(tb)
	db.SetMaxOpenConns(1)
	return db
}

// openPostgres is a new schema on the Postgres named by DATABASE_URL.
func openPostgres(tb testing.TB) *sql.DB {
	db := testenv.Postgres(tb)
	db.SetMaxOpenConns(4)
	return db
}

// depths are how many rows come before the page fetched.
var depths = []int{1_000, 50_000, 190_000}

// BenchmarkKeysetVsOffset fetches the page that starts after depth rows,
// newest first: with LIMIT/OFFSET (offset), which reads and discards the
// rows before it, and with the condition Keyset.After builds from the
// last row of the page before (asynckit-keyset), which starts at that row
// in the index. Both statements are prepared once, as a service would, and
// the keyset's arguments are rebuilt from the row on every call. Both
// must return the same page before either is timed.
func BenchmarkKeysetVsOffset(b *testing.B) {
	ks := pagination.Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}
	for _, d := range databases {
		b.Run(d.name, func(b *testing.B) {
			db := d.open(b)
			ctx := context.Background()
			for _, q := range []string{
				fmt.Sprintf("CREATE TABLE feed (id %s, created_at %s NOT NULL)", d.idType, d.timeType),
				d.fill,
				"CREATE INDEX feed_created ON feed (created_at, id)",
				"ANALYZE",
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					b.Fatalf("%s: %v", q, err)
				}
			}
			orderBy, err := ks.OrderBy(d.dialect)
			must(b, err)
			prepare := func(q string) *sql.Stmt {
				stmt, err := db.PrepareContext(ctx, q)
				must(b, err)
				b.Cleanup(func() { _ = stmt.Close() })
				return stmt
			}
			for _, depth := range depths {
				var lastID int64
				var lastAt time.Time
				must(b, db.QueryRowContext(ctx, fmt.Sprintf(
					"SELECT id, created_at FROM feed ORDER BY %s LIMIT 1 OFFSET %d", orderBy, depth-1)).
					Scan(&lastID, &lastAt))
				values := []any{lastAt, lastID}

				offsetStmt := prepare(fmt.Sprintf("SELECT id, created_at FROM feed ORDER BY %s LIMIT %d OFFSET %d",
					orderBy, pageSize, depth))
				where, _, err := ks.After(values, d.dialect)
				must(b, err)
				keysetStmt := prepare(fmt.Sprintf("SELECT id, created_at FROM feed WHERE %s ORDER BY %s LIMIT %d",
					where, orderBy, pageSize))
				variants := []struct {
					name  string
					fetch func() ([]int64, error)
				}{
					{"asynckit-keyset", func() ([]int64, error) {
						_, args, err := ks.After(values, d.dialect)
						if err != nil {
							return nil, err
						}
						return fetchIDs(ctx, keysetStmt, args...)
					}},
					{"offset", func() ([]int64, error) { return fetchIDs(ctx, offsetStmt) }},
				}
				want, err := variants[1].fetch()
				must(b, err)
				got, err := variants[0].fetch()
				must(b, err)
				if len(want) != pageSize || !slices.Equal(got, want) {
					b.Fatalf("depth %d: keyset page %v, OFFSET page %v", depth, got, want)
				}
				for _, v := range variants {
					b.Run(fmt.Sprintf("depth=%d/%s", depth, v.name), func(b *testing.B) {
						b.ReportAllocs()
						for b.Loop() {
							if _, err := v.fetch(); err != nil {
								b.Fatal(err)
							}
						}
					})
				}
			}
		})
	}
}

func fetchIDs(ctx context.Context, stmt *sql.Stmt, args ...any) ([]int64, error) {
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make([]int64, 0, pageSize)
	for rows.Next() {
		var id int64
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
