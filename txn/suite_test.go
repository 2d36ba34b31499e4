package txn_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/txn"
)

var (
	errBoom  = errors.New("boom")
	errRetry = errors.New("try again")
)

// fastRetry makes Do retry errRetry without waiting long.
var fastRetry = []txn.Option{txn.RetryIf(func(err error) bool { return errors.Is(err, errRetry) }), txn.Backoff(time.Millisecond, time.Millisecond)}

// TestSuite runs the same behaviours against every database.
func TestSuite(t *testing.T) {
	for _, d := range dialects() {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range suiteCases {
				t.Run(c.name, func(t *testing.T) {
					if c.skip != nil {
						if why := c.skip(d); why != "" {
							t.Skip(why)
						}
					}
					c.run(t, d)
				})
			}
		})
	}
}

type suiteCase struct {
	name string
	skip func(dialect) string
	run  func(t *testing.T, d dialect)
}

var suiteCases = []suiteCase{
	{name: "commit makes the work visible", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		ctx := context.Background()
		err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			require.Equal(t, []int{}, d.ids(t, db), "uncommitted work must not be visible outside")
			return nil
		}, d.opts...)
		require.NoError(t, err)
		require.Equal(t, []int{1}, d.ids(t, db))
		require.Zero(t, db.Stats().InUse, "the connection must go back to the pool")
	}},
	{name: "error from fn rolls back and is returned unchanged", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		calls := 0
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			require.NoError(t, d.insert(ctx, db, 1))
			return errBoom
		}, d.opts...)
		require.Same(t, errBoom, err)
		require.Equal(t, 1, calls, "an error that is not retryable runs fn once")
		require.Equal(t, []int{}, d.ids(t, db))
		require.Zero(t, db.Stats().InUse)
	}},
	{name: "panic rolls back and panics again", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var rolledBack atomic.Bool
		require.PanicsWithValue(t, "kaboom", func() {
			_ = txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
				require.NoError(t, d.insert(ctx, db, 1))
				require.NoError(t, txn.AfterRollback(ctx, func(context.Context) { rolledBack.Store(true) }))
				panic("kaboom")
			}, d.opts...)
		})
		require.Equal(t, []int{}, d.ids(t, db))
		require.True(t, rolledBack.Load(), "AfterRollback hooks run when fn panics")
		require.Zero(t, db.Stats().InUse)
	}},
	{name: "runtime.Goexit in fn rolls back and releases the connection", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
				if err := d.insert(ctx, db, 1); err != nil {
					return err
				}
				runtime.Goexit() // what t.FailNow does
				return nil
			}, d.opts...)
		}()
		<-done
		require.Equal(t, []int{}, d.ids(t, db))
		require.Zero(t, db.Stats().InUse)
	}},
	{name: "hooks registered from several goroutines inside fn all run", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var ran atomic.Int64
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			var wg sync.WaitGroup
			for range 10 {
				wg.Go(func() {
					require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { ran.Add(1) }))
				})
			}
			wg.Wait()
			return nil
		}, d.opts...)
		require.NoError(t, err)
		require.Equal(t, int64(10), ran.Load())
	}},
	{name: "nested three deep with an inner failure keeps the outer work", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var innerErr error
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				require.NoError(t, d.insert(ctx, db, 2))
				innerErr = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					require.NoError(t, d.insert(ctx, db, 3))
					return errBoom
				})
				// The middle level sees the error and carries on.
				require.NoError(t, d.insert(ctx, db, 4))
				return nil
			})
			require.NoError(t, err)
			return d.insert(ctx, db, 5)
		}, d.opts...)
		require.NoError(t, err)
		require.Same(t, errBoom, innerErr, "the inner error reaches the enclosing fn unchanged")
		require.Equal(t, []int{1, 2, 4, 5}, d.ids(t, db))
	}},
	{name: "failed middle level drops its committed inner level", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				require.NoError(t, txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					return d.insert(ctx, db, 2)
				}))
				return errBoom
			})
			require.ErrorIs(t, err, errBoom)
			return nil
		}, d.opts...)
		require.NoError(t, err)
		require.Equal(t, []int{1}, d.ids(t, db))
	}},
	{name: "panic in a nested Do rolls back its savepoint and goes on to the caller", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			func() {
				defer func() { require.Equal(t, "inner", recover()) }()
				_ = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					require.NoError(t, d.insert(ctx, db, 2))
					panic("inner")
				})
			}()
			return d.insert(ctx, db, 3)
		}, d.opts...)
		require.NoError(t, err)
		require.Equal(t, []int{1, 3}, d.ids(t, db))
	}},
	{name: "a statement error ignored inside a nested Do does not poison the outer transaction", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var nestedErr error
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			nestedErr = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				require.Error(t, d.insert(ctx, db, 1), "duplicate key")
				return nil // ignored
			})
			return d.insert(ctx, db, 3)
		}, d.opts...)
		require.NoError(t, err)
		if d.abortsOnError {
			// The failed statement aborted the transaction, so RELEASE
			// fails; rolling back to the savepoint recovers it.
			require.ErrorContains(t, nestedErr, "txn: release savepoint")
		} else {
			require.NoError(t, nestedErr)
		}
		require.Equal(t, []int{1, 3}, d.ids(t, db))
	}},
	{name: "savepoint names stay valid and unique past many and deep levels", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		// 100 sibling savepoints (past the cached names), every third
		// failing, then a chain 12 deep whose innermost level fails.
		var deep func(ctx context.Context, level int) error
		deep = func(ctx context.Context, level int) error {
			return txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				require.NoError(t, d.insert(ctx, db, 1000+level))
				if level == 12 {
					return errBoom
				}
				err := deep(ctx, level+1)
				if level+1 == 12 {
					require.ErrorIs(t, err, errBoom)
				} else {
					require.NoError(t, err, "level %d", level+1)
				}
				return nil
			})
		}
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			for i := 1; i <= 100; i++ {
				err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					if err := d.insert(ctx, db, i); err != nil {
						return err
					}
					if i%3 == 0 {
						return errBoom
					}
					return nil
				})
				if i%3 == 0 {
					require.ErrorIs(t, err, errBoom)
				} else {
					require.NoError(t, err, "savepoint %d", i)
				}
			}
			return deep(ctx, 1)
		}, d.opts...)
		require.NoError(t, err)
		var want []int
		for i := 1; i <= 100; i++ {
			if i%3 != 0 {
				want = append(want, i)
			}
		}
		for level := 1; level < 12; level++ {
			want = append(want, 1000+level)
		}
		require.Equal(t, want, d.ids(t, db))
	}},
	{name: "nested Do on another database is an error, not a second transaction", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		other := d.setup(t)
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			called := false
			err := txn.Do(ctx, other, func(ctx context.Context, tx *sql.Tx) error {
				called = true
				return nil
			})
			require.ErrorIs(t, err, txn.ErrOtherDB)
			require.False(t, called)
			return nil
		}, d.opts...)
		require.NoError(t, err)
		require.Equal(t, []int{1}, d.ids(t, db))
	}},
	{name: "nested Do refuses options the outer transaction does not have", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		noop := func(context.Context, *sql.Tx) error { return nil }
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.ErrorIs(t, txn.Do(ctx, db, noop, txn.Isolation(sql.LevelSerializable)), txn.ErrNestedOptions)
			require.ErrorIs(t, txn.Do(ctx, db, noop, txn.ReadOnly()), txn.ErrNestedOptions)
			require.NoError(t, txn.Do(ctx, db, noop, txn.Isolation(sql.LevelDefault)), "the default level asks for nothing")
			require.NoError(t, txn.Do(ctx, db, noop, txn.MaxAttempts(7)), "retry options are ignored when nested")
			return nil
		}, d.opts...)
		require.NoError(t, err)
		err = txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			return txn.Do(ctx, db, noop, txn.Isolation(sql.LevelRepeatableRead))
		}, d.with(txn.Isolation(sql.LevelRepeatableRead))...)
		require.NoError(t, err, "the same level is accepted")
	}},
	{name: "From gives the transaction inside Do and the database outside", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		other := d.open(t)
		ctx := context.Background()
		require.Same(t, db, txn.From(ctx, db))
		err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			require.Equal(t, "context.Background.WithTransaction", fmt.Sprint(ctx))
			require.Same(t, tx, txn.From(ctx, db))
			require.Same(t, other, txn.From(ctx, other), "a transaction on another db is not used")
			return txn.Do(ctx, db, func(ctx context.Context, inner *sql.Tx) error {
				require.Same(t, tx, inner)
				require.Same(t, tx, txn.From(ctx, db))
				return nil
			})
		}, d.opts...)
		require.NoError(t, err)
	}},
	{name: "AfterCommit hooks run in order after the commit with a ctx outside it", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var got []string
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			for _, name := range []string{"a", "b", "c"} {
				require.NoError(t, txn.AfterCommit(ctx, func(ctx context.Context) {
					// The hook sees the committed row through a ctx
					// that carries no transaction.
					require.Same(t, db, txn.From(ctx, db))
					require.Equal(t, []int{1}, d.ids(t, db))
					got = append(got, name)
				}))
			}
			require.Empty(t, got, "hooks must wait for the commit")
			return nil
		}, d.opts...)
		require.NoError(t, err)
		require.Equal(t, []string{"a", "b", "c"}, got)
	}},
	{name: "hooks of a rolled-back savepoint are dropped with it", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var got []string
		add := func(s string) func(context.Context) { return func(context.Context) { got = append(got, s) } }
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, txn.AfterCommit(ctx, add("commit outer")))
			require.NoError(t, txn.AfterRollback(ctx, add("rollback outer")))
			err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				require.NoError(t, txn.AfterCommit(ctx, add("commit failed")))
				require.NoError(t, txn.AfterRollback(ctx, func(ctx context.Context) {
					require.Same(t, db, txn.From(ctx, db), "hooks get a ctx without the transaction")
					add("rollback failed")(ctx)
				}))
				require.NoError(t, txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					return txn.AfterCommit(ctx, add("commit inside failed"))
				}))
				return errBoom
			})
			require.ErrorIs(t, err, errBoom)
			require.Equal(t, []string{"rollback failed"}, got, "a savepoint's AfterRollback hooks run once it is rolled back")
			require.NoError(t, txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				require.NoError(t, txn.AfterRollback(ctx, add("rollback kept")))
				return txn.AfterCommit(ctx, add("commit kept"))
			}))
			return nil
		}, d.opts...)
		require.NoError(t, err)
		require.Equal(t, []string{"rollback failed", "commit outer", "commit kept"}, got)
	}},
	{name: "rollback drops every commit hook and runs the rollback hooks", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var got []string
		add := func(s string) func(context.Context) { return func(context.Context) { got = append(got, s) } }
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, txn.AfterCommit(ctx, add("commit outer")))
			require.NoError(t, txn.AfterRollback(ctx, add("rollback outer")))
			require.NoError(t, txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				require.NoError(t, txn.AfterRollback(ctx, add("rollback inner")))
				return txn.AfterCommit(ctx, add("commit inner"))
			}))
			return errBoom
		}, d.opts...)
		require.Same(t, errBoom, err)
		require.Equal(t, []string{"rollback outer", "rollback inner"}, got)
	}},
	{name: "a panicking hook neither loses the commit nor stops the others", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var got []string
		calls := 0
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			require.NoError(t, d.insert(ctx, db, 1))
			require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { got = append(got, "first") }))
			require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { panic(errBoom) }))
			require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { got = append(got, "last") }))
			return nil
		}, d.with(txn.RetryIf(func(error) bool { return true }), txn.Backoff(time.Millisecond, time.Millisecond))...)
		var he *txn.HookError
		require.ErrorAs(t, err, &he)
		require.True(t, he.Committed)
		require.Len(t, he.Panics, 1)
		require.Contains(t, string(he.Panics[0].Stack), "panic")
		require.ErrorIs(t, err, errBoom, "a panic value that is an error is reachable")
		require.Equal(t, []string{"first", "last"}, got)
		require.Equal(t, []int{1}, d.ids(t, db))
		require.Equal(t, 1, calls, "a committed transaction is never retried")
	}},
	{name: "hooks and work from a failed attempt never survive the retry", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var got []string
		var retries []int
		attempt := 0
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			attempt++
			a := fmt.Sprint(attempt)
			require.NoError(t, d.insert(ctx, db, attempt))
			require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { got = append(got, "commit "+a) }))
			require.NoError(t, txn.AfterRollback(ctx, func(context.Context) { got = append(got, "rollback "+a) }))
			if attempt < 3 {
				return errRetry
			}
			return nil
		}, d.with(append(fastRetry, txn.OnRetry(func(n int, err error) {
			require.ErrorIs(t, err, errRetry)
			retries = append(retries, n)
		}))...)...)
		require.NoError(t, err)
		require.Equal(t, []int{1, 2}, retries)
		require.Equal(t, []string{"rollback 1", "rollback 2", "commit 3"}, got)
		require.Equal(t, []int{3}, d.ids(t, db))
	}},
	{name: "retries stop at MaxAttempts and return the last error", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		calls, retries := 0, 0
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			return fmt.Errorf("attempt %d: %w", calls, errRetry)
		}, d.with(append(fastRetry, txn.MaxAttempts(3), txn.OnRetry(func(int, error) { retries++ }))...)...)
		require.ErrorIs(t, err, errRetry)
		require.EqualError(t, err, "attempt 3: try again")
		require.Equal(t, 3, calls)
		require.Equal(t, 2, retries)
	}},
	{name: "a retryable error in a nested Do retries the whole transaction even if swallowed", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		attempt, retries := 0, 0
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			attempt++
			require.NoError(t, d.insert(ctx, db, 10*attempt))
			err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				if attempt == 1 {
					return errRetry
				}
				return d.insert(ctx, db, 10*attempt+1)
			})
			if attempt == 1 {
				require.ErrorIs(t, err, errRetry)
				// Later nested calls in a doomed attempt do not run.
				require.ErrorIs(t, txn.Do(ctx, db, func(context.Context, *sql.Tx) error {
					t.Error("fn ran in a doomed transaction")
					return nil
				}), errRetry)
			}
			return nil // swallowed: the attempt must still not commit
		}, d.with(append(fastRetry, txn.OnRetry(func(int, error) { retries++ }))...)...)
		require.NoError(t, err)
		require.Equal(t, 1, retries)
		require.Equal(t, []int{20, 21}, d.ids(t, db))
	}},
	{name: "fn that ends the transaction itself leaves the commit outcome unknown", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		calls, retries := 0, 0
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			require.NoError(t, d.insert(ctx, db, 1))
			return tx.Commit()
		}, d.with(append(fastRetry, txn.RetryIf(func(error) bool { return true }), txn.OnRetry(func(int, error) { retries++ }))...)...)
		require.ErrorIs(t, err, txn.ErrCommitUnknown)
		require.ErrorIs(t, err, sql.ErrTxDone)
		var ce *txn.CommitError
		require.ErrorAs(t, err, &ce)
		require.True(t, ce.Unknown)
		require.Equal(t, 1, calls, "an unknown outcome is never retried, whatever RetryIf says")
		require.Zero(t, retries)
		require.Equal(t, []int{1}, d.ids(t, db), "the work did commit: that is why the outcome is unknown")
	}},
	{name: "connection lost before COMMIT returns leaves the outcome unknown", skip: func(d dialect) string {
		if d.killQuery == "" {
			return d.name + " has no connection to lose"
		}
		return ""
	}, run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		admin := d.open(t)
		calls := 0
		var hooks []string
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			require.NoError(t, d.insert(ctx, db, 1))
			require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { hooks = append(hooks, "commit") }))
			require.NoError(t, txn.AfterRollback(ctx, func(context.Context) { hooks = append(hooks, "rollback") }))
			var id int64
			require.NoError(t, tx.QueryRowContext(ctx, d.connID).Scan(&id))
			_, err := admin.ExecContext(ctx, fmt.Sprintf(d.killQuery, id))
			require.NoError(t, err)
			return nil
		}, d.opts...)
		t.Logf("commit error: %v", err)
		require.ErrorIs(t, err, txn.ErrCommitUnknown)
		var ce *txn.CommitError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, 1, calls)
		require.Empty(t, hooks, "neither kind of hook runs when nobody knows which applies")
	}},
	{name: "a commit the database refuses is a known CommitError", skip: func(d dialect) string {
		if !d.deferredFK {
			return d.name + " checks foreign keys per statement, not at COMMIT"
		}
		return ""
	}, run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		_, err := db.ExecContext(context.Background(), `CREATE TABLE child (id INTEGER PRIMARY KEY,
			item_id INTEGER REFERENCES items (id) DEFERRABLE INITIALLY DEFERRED)`)
		require.NoError(t, err)
		var got []string
		calls := 0
		err = txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			calls++
			require.NoError(t, txn.AfterCommit(ctx, func(context.Context) { got = append(got, "commit") }))
			require.NoError(t, txn.AfterRollback(ctx, func(context.Context) { got = append(got, "rollback") }))
			_, err := tx.ExecContext(ctx, d.q("INSERT INTO child (id, item_id) VALUES (?, ?)"), 1, 42)
			return err
		}, d.opts...)
		var ce *txn.CommitError
		require.ErrorAs(t, err, &ce)
		require.False(t, ce.Unknown)
		require.NotErrorIs(t, err, txn.ErrCommitUnknown)
		require.Equal(t, 1, calls, "a constraint failure is not retried")
		require.Equal(t, []string{"rollback"}, got)
	}},
	{name: "a commit after an ignored statement error is a known CommitError", skip: func(d dialect) string {
		if !d.abortsOnError {
			return d.name + " keeps a transaction usable after a failed statement"
		}
		return ""
	}, run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			require.Error(t, d.insert(ctx, db, 1), "duplicate key")
			return nil // ignored: COMMIT then rolls back
		}, d.opts...)
		var ce *txn.CommitError
		require.ErrorAs(t, err, &ce)
		require.False(t, ce.Unknown, "the server answered: it rolled back")
		require.Equal(t, []int{}, d.ids(t, db))
	}},
	{name: "ReadOnly transactions refuse writes", skip: func(d dialect) string {
		if !d.readOnly {
			return d.name + "'s driver ignores the read-only flag"
		}
		return ""
	}, run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		err := txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			return d.insert(ctx, db, 1)
		}, d.with(txn.ReadOnly())...)
		require.Error(t, err)
		require.Equal(t, []int{}, d.ids(t, db))
		err = txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			return txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
				var n int
				return tx.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n)
			}, txn.ReadOnly())
		}, d.with(txn.ReadOnly())...)
		require.NoError(t, err, "a nested read-only Do inside a read-only one is fine")
	}},
	{name: "a ctx kept past its transaction is refused", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		var kept context.Context
		require.NoError(t, txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
			kept = ctx
			return nil
		}, d.opts...))
		noop := func(context.Context) {}
		require.ErrorIs(t, txn.AfterCommit(kept, noop), txn.ErrTxDone)
		require.ErrorIs(t, txn.AfterRollback(kept, noop), txn.ErrTxDone)
		require.ErrorIs(t, txn.Do(kept, db, func(context.Context, *sql.Tx) error { return nil }), txn.ErrTxDone)
		_, err := txn.From(kept, db).ExecContext(context.Background(), "SELECT 1")
		require.ErrorIs(t, err, sql.ErrTxDone, "From never runs a statement outside the transaction it promised")
	}},
	{name: "a context that ends before commit rolls back", run: func(t *testing.T, d dialect) {
		db := d.setup(t)
		ctx, cancel := context.WithCancel(context.Background())
		err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			require.NoError(t, d.insert(ctx, db, 1))
			cancel()
			return nil
		}, d.opts...)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, txn.ErrCommitUnknown, "COMMIT was never sent")
		require.Equal(t, []int{}, d.ids(t, db))
	}},
}
