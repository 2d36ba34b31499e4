// Package txn_test compares asynckit's txn.Do, alone and nested three
// deep, with the same transaction written by hand in database/sql, on
// SQLite and Postgres. Neither side does any work inside the transaction,
// so what is measured is what each way of running one costs.
//
// Each database is a fresh one (a new SQLite file, a new Postgres schema
// from DATABASE_URL) through internal/testenv. Without DATABASE_URL the
// Postgres half skips, or fails when ASYNCKIT_REQUIRE_SERVICES=1.
package txn_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/txn"
)

var databases = []struct {
	name string
	open func(testing.TB) *sql.DB
}{
	{"SQLite", testenv.SQLite},
	{"Postgres", testenv.Postgres},
}

// way is one way of running a transaction: new returns it for db.
type way struct {
	name string
	new  func(db *sql.DB) func(ctx context.Context) error
}

// compare runs each way on a fresh database of each kind.
func compare(b *testing.B, ways []way) {
	for _, d := range databases {
		b.Run(d.name, func(b *testing.B) {
			db := d.open(b)
			ctx := context.Background()
			for _, w := range ways {
				run := w.new(db)
				b.Run(w.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if err := run(ctx); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkDo is one empty transaction: txn.Do with no options against
// BeginTx and Commit.
func BenchmarkDo(b *testing.B) {
	compare(b, ways(0))
}

// BenchmarkNested is one transaction holding three nested savepoints:
// three txn.Do calls inside one, against BeginTx, three SAVEPOINTs, three
// RELEASEs and Commit.
func BenchmarkNested(b *testing.B) {
	b.Run("depth=3", func(b *testing.B) { compare(b, ways(3)) })
}

// ways returns the two ways of running one transaction that holds depth
// nested savepoints: txn.Do, and the same written by hand.
func ways(depth int) []way {
	return []way{
		{"asynckit-txn", func(db *sql.DB) func(context.Context) error {
			fn := nest(db, depth)
			return func(ctx context.Context) error { return txn.Do(ctx, db, fn) }
		}},
		{"hand-written", func(db *sql.DB) func(context.Context) error { return handWritten(db, depth) }},
	}
}

// handWritten returns a transaction with depth savepoints written by hand
// in database/sql: BeginTx, SAVEPOINT sp_1 … sp_depth, their RELEASEs in
// reverse, and Commit. The statements are built once.
func handWritten(db *sql.DB, depth int) func(context.Context) error {
	stmts := make([]string, 0, 2*depth)
	for i := 1; i <= depth; i++ {
		stmts = append(stmts, fmt.Sprintf("SAVEPOINT sp_%d", i))
	}
	for i := depth; i >= 1; i-- {
		stmts = append(stmts, fmt.Sprintf("RELEASE SAVEPOINT sp_%d", i))
	}
	return func(ctx context.Context) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				_ = tx.Rollback()
				return err
			}
		}
		return tx.Commit()
	}
}

// nest returns a transaction body that nests depth txn.Do calls on db,
// one inside the other, the innermost doing nothing. It is made once per
// database, so that the calls allocate no closures of the benchmark's.
func nest(db *sql.DB, depth int) func(context.Context, *sql.Tx) error {
	if depth == 0 {
		return func(context.Context, *sql.Tx) error { return nil }
	}
	inner := nest(db, depth-1)
	return func(ctx context.Context, _ *sql.Tx) error { return txn.Do(ctx, db, inner) }
}
