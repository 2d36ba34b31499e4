package pagination

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const (
	benchRows     = 200_000
	benchPageSize = 20
)

// benchFill inserts benchRows rows in one statement: id, and a created_at
// that every two consecutive rows share. Each database generates the rows
// itself, so setup takes about a second.
var benchFill = map[string]string{
	"SQLite": `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
		INSERT INTO feed SELECT i, strftime('%Y-%m-%d %H:%M:%S', 1772355600 + i / 2, 'unixepoch') || '+00:00' FROM n`,
	"Postgres": `INSERT INTO feed SELECT i, timestamptz '2026-03-01 09:00:00+00' + (i / 2) * interval '1 second'
		FROM generate_series(1, 200000) AS i`,
	// MariaDB's sequence engine; MySQL 8 has no seq_ tables.
	"MariaDB": `INSERT INTO feed SELECT seq, TIMESTAMP '2026-03-01 09:00:00' + INTERVAL (seq DIV 2) SECOND FROM seq_1_to_200000`,
}

// BenchmarkKeysetVsOffset fetches one 20-row page of a 200,000-row feed,
// newest first, at depths 1,000, 50,000 and 190,000, with LIMIT/OFFSET and
// with Keyset.After from the last row of the page before, on each
// database. "keyset" is the form the dialect uses; "keyset-other" the
// other form (row values or the bounded expanded comparison), measured to
// justify the choice. The OFFSET/keyset ratio at each depth is logged (run
// with -v to see it).
// Databases whose variable is unset are skipped.
func BenchmarkKeysetVsOffset(b *testing.B) {
	ks := Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}
	for _, d := range databases {
		b.Run(d.name, func(b *testing.B) {
			db := d.open(b)
			ctx := context.Background()
			for _, q := range []string{
				fmt.Sprintf("CREATE TABLE feed (id %s, created_at %s NOT NULL)", d.idType, d.timeType),
				benchFill[d.name],
				"CREATE INDEX feed_created ON feed (created_at, id)",
			} {
				_, err := db.ExecContext(ctx, q)
				require.NoError(b, err)
			}
			analyze := "ANALYZE"
			if d.name == "MariaDB" {
				analyze = "ANALYZE TABLE feed"
			}
			_, err := db.ExecContext(ctx, analyze)
			require.NoError(b, err)

			orderBy, err := ks.OrderBy(d.dialect)
			require.NoError(b, err)
			other := d.dialect
			other.rowValues = !other.rowValues

			for _, depth := range []int{1_000, 50_000, 190_000} {
				var last struct {
					id        int64
					createdAt time.Time
				}
				require.NoError(b, db.QueryRowContext(ctx, fmt.Sprintf(
					"SELECT id, created_at FROM feed ORDER BY %s LIMIT 1 OFFSET %d", orderBy, depth-1)).
					Scan(&last.id, &last.createdAt))
				values := []any{last.createdAt, last.id}

				// Each variant's statement is prepared once, as a service
				// would, so that what is measured is the database's work
				// and not the parsing both variants pay alike.
				prepare := func(q string) *sql.Stmt {
					stmt, err := db.PrepareContext(ctx, q)
					require.NoError(b, err)
					b.Cleanup(func() { _ = stmt.Close() })
					return stmt
				}
				offsetStmt := prepare(fmt.Sprintf("SELECT id, created_at FROM feed ORDER BY %s LIMIT %d OFFSET %d",
					orderBy, benchPageSize, depth))
				offset := func() ([]int64, error) { return fetchIDs(ctx, offsetStmt) }
				keyset := func(d Dialect) func() ([]int64, error) {
					where, _, err := ks.After(values, d)
					require.NoError(b, err)
					stmt := prepare(fmt.Sprintf("SELECT id, created_at FROM feed WHERE %s ORDER BY %s LIMIT %d",
						where, orderBy, benchPageSize))
					return func() ([]int64, error) {
						// The fragment is the same for every page; only the
						// arguments taken from the last row change.
						_, args, err := ks.After(values, d)
						if err != nil {
							return nil, err
						}
						return fetchIDs(ctx, stmt, args...)
					}
				}
				variants := []struct {
					name  string
					fetch func() ([]int64, error)
				}{
					{"offset", offset},
					{"keyset", keyset(d.dialect)},
					{"keyset-other", keyset(other)},
				}
				// Every variant must return the same page before its
				// speed means anything.
				want, err := offset()
				require.NoError(b, err)
				require.Len(b, want, benchPageSize)
				for _, v := range variants[1:] {
					got, err := v.fetch()
					require.NoError(b, err)
					require.Equal(b, want, got, v.name)
				}

				perOp := map[string]time.Duration{}
				for _, v := range variants {
					b.Run(fmt.Sprintf("depth=%d/%s", depth, v.name), func(b *testing.B) {
						b.ReportAllocs()
						for b.Loop() {
							if _, err := v.fetch(); err != nil {
								b.Fatal(err)
							}
						}
						perOp[v.name] = b.Elapsed() / time.Duration(b.N)
					})
				}
				if perOp["offset"] > 0 && perOp["keyset"] > 0 {
					b.Logf("%s depth %d: OFFSET %v, keyset %v (other form %v): keyset is %.0fx faster",
						d.name, depth, perOp["offset"], perOp["keyset"], perOp["keyset-other"],
						float64(perOp["offset"])/float64(perOp["keyset"]))
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
	ids := make([]int64, 0, benchPageSize)
	for rows.Next() {
		var id int64
		var t time.Time
		if err := rows.Scan(&id, &t); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return slices.Clip(ids), rows.Err()
}
