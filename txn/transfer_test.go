package txn_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/txn"
)

var errInsufficientFunds = errors.New("insufficient funds")

// transferSize returns how many transfers the invariant test runs: the full
// 5,000 under ASYNCKIT_SOAK=1, and fewer otherwise to stay inside the test
// budget under -race on a small machine.
func transferSize() int {
	if os.Getenv("ASYNCKIT_SOAK") == "1" {
		return 5000
	}
	return 1000
}

// TestTransferInvariant moves money between 50 accounts from 20 goroutines
// at once. Every transfer either applies whole or is refused for
// insufficient funds; no balance goes negative, the total stays 50,000, and
// the ledger of applied transfers explains every balance.
func TestTransferInvariant(t *testing.T) {
	const (
		accounts = 50
		initial  = 1000
		workers  = 20
	)
	total := transferSize()
	for _, d := range transferDialects() {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			ctx := context.Background()
			for _, stmt := range []string{
				"CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)",
				"CREATE TABLE ledger (id INTEGER PRIMARY KEY, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount BIGINT NOT NULL)",
			} {
				_, err := db.ExecContext(ctx, stmt)
				require.NoError(t, err)
			}
			for id := 1; id <= accounts; id++ {
				_, err := db.ExecContext(ctx, d.q("INSERT INTO accounts (id, balance) VALUES (?, ?)"), id, initial)
				require.NoError(t, err)
			}

			var retries atomic.Int64
			opts := d.with(
				txn.Isolation(d.transferIsolation),
				txn.MaxAttempts(100),
				txn.Backoff(time.Millisecond, 50*time.Millisecond),
				txn.OnRetry(func(int, error) { retries.Add(1) }),
			)
			transfer := func(id, src, dst int, amount int64) error {
				return txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					var balance int64
					err := tx.QueryRowContext(ctx, d.q("SELECT balance FROM accounts WHERE id = ?"+d.forUpdate), src).Scan(&balance)
					if err != nil {
						return err
					}
					if balance < amount {
						return errInsufficientFunds
					}
					for _, s := range []struct {
						query string
						args  []any
					}{
						{"UPDATE accounts SET balance = balance - ? WHERE id = ?", []any{amount, src}},
						{"UPDATE accounts SET balance = balance + ? WHERE id = ?", []any{amount, dst}},
						{"INSERT INTO ledger (id, src, dst, amount) VALUES (?, ?, ?, ?)", []any{id, src, dst, amount}},
					} {
						if _, err := tx.ExecContext(ctx, d.q(s.query), s.args...); err != nil {
							return err
						}
					}
					return nil
				}, opts...)
			}

			// An observer checks, while the transfers run, that every
			// committed state it sees has the full total and no negative
			// balance: one statement reads one consistent snapshot.
			// It looks after every tenth transfer, so that it does not
			// crowd the writers out of SQLite's single lock.
			stop := make(chan struct{})
			tick := make(chan struct{}, 1)
			observed := make(chan int)
			go func() {
				n := 0
				defer func() { observed <- n }()
				for {
					select {
					case <-stop:
						return
					case <-tick:
					}
					var sum, low int64
					err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
						return tx.QueryRowContext(ctx, "SELECT SUM(balance), MIN(balance) FROM accounts").Scan(&sum, &low)
					}, d.with(txn.ReadOnly())...)
					if err != nil {
						t.Errorf("observer: %v", err)
						return
					}
					if sum != accounts*initial || low < 0 {
						t.Errorf("observer saw total %d and lowest balance %d", sum, low)
						return
					}
					n++
				}
			}()

			start := time.Now()
			var applied, refused atomic.Int64
			var next atomic.Int64
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for {
						id := int(next.Add(1))
						if id > total {
							return
						}
						src := rand.IntN(accounts) + 1
						dst := rand.IntN(accounts-1) + 1
						if dst >= src {
							dst++
						}
						err := transfer(id, src, dst, rand.Int64N(400)+1)
						if id%10 == 0 {
							select {
							case tick <- struct{}{}:
							default:
							}
						}
						switch {
						case err == nil:
							applied.Add(1)
						case errors.Is(err, errInsufficientFunds):
							refused.Add(1)
						default:
							t.Errorf("transfer %d: %v", id, err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			observations := <-observed
			require.False(t, t.Failed())
			require.Positive(t, observations)
			require.Equal(t, int64(total), applied.Load()+refused.Load())
			t.Logf("%s: %d transfers (%d applied, %d refused) by %d goroutines in %v, %d retries; %d consistent snapshots observed",
				d.name, total, applied.Load(), refused.Load(), workers, time.Since(start).Round(time.Millisecond), retries.Load(), observations)

			// The ledger replayed from the opening balances gives every
			// balance: each applied transfer changed both sides, and
			// nothing else did.
			want := make(map[int]int64, accounts)
			for id := 1; id <= accounts; id++ {
				want[id] = initial
			}
			rows, err := db.QueryContext(ctx, "SELECT src, dst, amount FROM ledger")
			require.NoError(t, err)
			var entries int64
			for rows.Next() {
				var src, dst int
				var amount int64
				require.NoError(t, rows.Scan(&src, &dst, &amount))
				want[src] -= amount
				want[dst] += amount
				entries++
			}
			require.NoError(t, rows.Err())
			require.NoError(t, rows.Close())
			require.Equal(t, applied.Load(), entries, "one ledger row per applied transfer")

			rows, err = db.QueryContext(ctx, "SELECT id, balance FROM accounts")
			require.NoError(t, err)
			got := make(map[int]int64, accounts)
			var sum int64
			for rows.Next() {
				var id int
				var balance int64
				require.NoError(t, rows.Scan(&id, &balance))
				require.GreaterOrEqual(t, balance, int64(0), "account %d", id)
				got[id] = balance
				sum += balance
			}
			require.NoError(t, rows.Err())
			require.NoError(t, rows.Close())
			require.Equal(t, int64(accounts*initial), sum)
			require.Equal(t, want, got)
			if d.transferIsolation == sql.LevelSerializable {
				require.Positive(t, retries.Load(), "serializable transfers from %d goroutines conflict", workers)
			}
		})
	}
}
