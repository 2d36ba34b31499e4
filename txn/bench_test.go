package txn_test

import (
	"context"
	"database/sql"
	"slices"
	"testing"
	"time"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/txn"
)

// pair benchmarks the helper and its hand-written equivalent on one SQLite
// database: each alone, as sub-benchmarks txn and hand-written, and then
// alternating call by call in the sub-benchmark interleaved, which reports
// the median time of each and their ratio. On a busy machine only the
// interleaved ratio is fair, since both sides see the same load.
func pair(b *testing.B, helper, hand func(ctx context.Context, db *sql.DB) error) {
	db := testenv.SQLite(b)
	ctx := context.Background()
	for _, v := range []struct {
		name string
		fn   func(context.Context, *sql.DB) error
	}{{"txn", helper}, {"hand-written", hand}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.fn(ctx, db); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("interleaved", func(b *testing.B) {
		b.ReportAllocs()
		var spent [2][]time.Duration
		fns := [2]func(context.Context, *sql.DB) error{helper, hand}
		n := 0
		for b.Loop() {
			// Alternate which goes first, so neither always follows the other.
			n++
			for j := range 2 {
				i := (j + n) % 2
				start := time.Now()
				if err := fns[i](ctx, db); err != nil {
					b.Fatal(err)
				}
				spent[i] = append(spent[i], time.Since(start))
			}
		}
		// Medians, because on a shared machine a few calls are preempted
		// for milliseconds and would swamp a mean.
		txnNs, handNs := median(spent[0]), median(spent[1])
		b.ReportMetric(float64(txnNs.Nanoseconds()), "txn-median-ns")
		b.ReportMetric(float64(handNs.Nanoseconds()), "hand-median-ns")
		b.ReportMetric(float64(txnNs)/float64(handNs), "txn/hand")
	})
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func BenchmarkDo(b *testing.B) {
	empty := func(context.Context, *sql.Tx) error { return nil }
	pair(b,
		func(ctx context.Context, db *sql.DB) error { return txn.Do(ctx, db, empty) },
		func(ctx context.Context, db *sql.DB) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			return tx.Commit()
		})
}

func BenchmarkNested(b *testing.B) {
	b.Run("depth=3", func(b *testing.B) {
		// The helper nests three Do calls in one; the hand-written version
		// opens and releases three savepoints in one transaction.
		var db *sql.DB
		var level func(depth int) func(context.Context, *sql.Tx) error
		levels := make([]func(context.Context, *sql.Tx) error, 4)
		level = func(depth int) func(context.Context, *sql.Tx) error {
			return func(ctx context.Context, _ *sql.Tx) error {
				if depth == 3 {
					return nil
				}
				return txn.Do(ctx, db, levels[depth+1])
			}
		}
		for i := range levels {
			levels[i] = level(i)
		}
		pair(b,
			func(ctx context.Context, d *sql.DB) error {
				db = d
				return txn.Do(ctx, db, levels[0])
			},
			func(ctx context.Context, db *sql.DB) error {
				tx, err := db.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				for _, s := range [...]string{
					"SAVEPOINT sp_1", "SAVEPOINT sp_2", "SAVEPOINT sp_3",
					"RELEASE SAVEPOINT sp_3", "RELEASE SAVEPOINT sp_2", "RELEASE SAVEPOINT sp_1",
				} {
					if _, err := tx.ExecContext(ctx, s); err != nil {
						_ = tx.Rollback()
						return err
					}
				}
				return tx.Commit()
			})
	})
}
