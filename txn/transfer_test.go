package txn_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
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

// Opening state of the transfer invariant test.
const (
	transferAccounts = 50
	transferInitial  = 1000
	transferTotal    = transferAccounts * transferInitial
)

// transferRec is one transfer the test attempted: what it asked for, how
// many attempts Do made, and what Do returned.
type transferRec struct {
	src, dst int
	amount   int64
	attempts int
	err      error
	done     bool
}

// ledgerRow is one row of the ledger table: an applied transfer.
type ledgerRow struct {
	id, src, dst int
	amount       int64
}

// TestTransferInvariant moves money between 50 accounts from 20 goroutines
// at once. Every transfer either applies whole or is refused for
// insufficient funds; no balance goes negative, the total stays 50,000, and
// the ledger of applied transfers explains every balance. A failure names
// the database, the invariant that broke and the rows that break it.
func TestTransferInvariant(t *testing.T) {
	const workers = 20
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
			for id := 1; id <= transferAccounts; id++ {
				_, err := db.ExecContext(ctx, d.q("INSERT INTO accounts (id, balance) VALUES (?, ?)"), id, transferInitial)
				require.NoError(t, err)
			}

			var retries atomic.Int64
			opts := d.with(
				txn.Isolation(d.transferIsolation),
				txn.MaxAttempts(100),
				txn.Backoff(time.Millisecond, 50*time.Millisecond),
				txn.OnRetry(func(int, error) { retries.Add(1) }),
			)
			// recs[id] is written only by the goroutine that runs transfer id.
			recs := make([]transferRec, total+1)
			transfer := func(id int) error {
				r := &recs[id]
				return txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
					r.attempts++
					var balance int64
					err := tx.QueryRowContext(ctx, d.q("SELECT balance FROM accounts WHERE id = ?"+d.forUpdate), r.src).Scan(&balance)
					if err != nil {
						return err
					}
					if balance < r.amount {
						return errInsufficientFunds
					}
					for _, s := range []struct {
						query string
						args  []any
					}{
						{"UPDATE accounts SET balance = balance - ? WHERE id = ?", []any{r.amount, r.src}},
						{"UPDATE accounts SET balance = balance + ? WHERE id = ?", []any{r.amount, r.dst}},
						{"INSERT INTO ledger (id, src, dst, amount) VALUES (?, ?, ?, ?)", []any{id, r.src, r.dst, r.amount}},
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
					var snapshot map[int]int64
					err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
						var err error
						snapshot, err = readBalances(ctx, tx)
						return err
					}, d.with(txn.ReadOnly())...)
					if err != nil {
						t.Errorf("%s: observer: %v", d.name, err)
						return
					}
					if p := checkSnapshot(snapshot); p != "" {
						t.Errorf("%s: a snapshot taken while transfers ran breaks %s", d.name, p)
						return
					}
					n++
				}
			}()

			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for {
						id := int(next.Add(1))
						if id > total {
							return
						}
						r := &recs[id]
						r.src = rand.IntN(transferAccounts) + 1
						r.dst = rand.IntN(transferAccounts-1) + 1
						if r.dst >= r.src {
							r.dst++
						}
						r.amount = rand.Int64N(400) + 1
						r.err = transfer(id)
						r.done = true
						if id%10 == 0 {
							select {
							case tick <- struct{}{}:
							default:
							}
						}
						if r.err != nil && !errors.Is(r.err, errInsufficientFunds) {
							t.Errorf("%s: transfer %d (%d → %d, %d) failed after %d attempts: %v",
								d.name, id, r.src, r.dst, r.amount, r.attempts, r.err)
							return
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			observations := <-observed
			elapsed := time.Since(start)

			balances, err := readBalances(ctx, db)
			require.NoError(t, err)
			ledger, err := readLedger(ctx, db)
			require.NoError(t, err)
			report := checkTransfers(recs, balances, ledger)
			require.Empty(t, report, "%s: %d transfers, %d retries", d.name, total, retries.Load())
			require.False(t, t.Failed(), "%s: see the errors above", d.name)
			require.Positive(t, observations, "%s: the observer saw no snapshot", d.name)
			t.Logf("%s: %d transfers (%d applied) by %d goroutines in %v, %d retries; %d consistent snapshots observed",
				d.name, total, len(ledger), workers, elapsed.Round(time.Millisecond), retries.Load(), observations)
			if d.transferIsolation == sql.LevelSerializable {
				require.Positive(t, retries.Load(), "%s: serializable transfers from %d goroutines conflict", d.name, workers)
			}
		})
	}
}

// readBalances reads every account's balance in one statement, so that on
// a database in autocommit, or at read committed, it is one snapshot.
func readBalances(ctx context.Context, q txn.Querier) (map[int]int64, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, balance FROM accounts")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	balances := make(map[int]int64, transferAccounts)
	for rows.Next() {
		var id int
		var balance int64
		if err := rows.Scan(&id, &balance); err != nil {
			return nil, err
		}
		balances[id] = balance
	}
	return balances, rows.Err()
}

// readLedger reads the ledger in id order.
func readLedger(ctx context.Context, q txn.Querier) ([]ledgerRow, error) {
	rows, err := q.QueryContext(ctx, "SELECT id, src, dst, amount FROM ledger ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ledger []ledgerRow
	for rows.Next() {
		var l ledgerRow
		if err := rows.Scan(&l.id, &l.src, &l.dst, &l.amount); err != nil {
			return nil, err
		}
		ledger = append(ledger, l)
	}
	return ledger, rows.Err()
}

// checkSnapshot returns, when the balances do not hold the opening total
// or one is negative, the invariant broken and the accounts that break it;
// otherwise "".
func checkSnapshot(balances map[int]int64) string {
	var sum int64
	var negative []string
	for _, id := range sortedIDs(balances) {
		sum += balances[id]
		if balances[id] < 0 {
			negative = append(negative, fmt.Sprintf("account %d: %d", id, balances[id]))
		}
	}
	var b strings.Builder
	if len(balances) != transferAccounts {
		fmt.Fprintf(&b, "\"there are %d accounts\": found %d\n", transferAccounts, len(balances))
	}
	if sum != transferTotal {
		fmt.Fprintf(&b, "\"the total is %d\": it is %d\n", transferTotal, sum)
	}
	if len(negative) > 0 {
		fmt.Fprintf(&b, "\"no balance is negative\":\n\t%s\n", strings.Join(negative, "\n\t"))
	}
	if b.Len() > 0 {
		fmt.Fprintf(&b, "balances: %v", balances)
	}
	return b.String()
}

// checkTransfers compares the final state with what the transfers
// reported, and returns every invariant it breaks with the rows that break
// it, or "" when all hold:
//   - every transfer ended, applied or refused for insufficient funds;
//   - the ledger holds exactly the transfers Do reported as applied;
//   - the final balances hold the opening total, none negative;
//   - each balance is its opening balance replayed through the ledger.
func checkTransfers(recs []transferRec, balances map[int]int64, ledger []ledgerRow) string {
	var b strings.Builder
	inLedger := make(map[int]ledgerRow, len(ledger))
	for _, l := range ledger {
		inLedger[l.id] = l
	}
	var unfinished, missing, unreported []string
	for id := 1; id < len(recs); id++ {
		r := recs[id]
		l, ok := inLedger[id]
		switch {
		case !r.done:
			unfinished = append(unfinished, fmt.Sprintf("transfer %d", id))
		case r.err == nil && !ok:
			missing = append(missing, fmt.Sprintf("transfer %d (%d → %d, %d) after %d attempts", id, r.src, r.dst, r.amount, r.attempts))
		case r.err != nil && ok:
			unreported = append(unreported, fmt.Sprintf("ledger %+v; transfer %d (%d → %d, %d) returned after %d attempts: %v",
				l, id, r.src, r.dst, r.amount, r.attempts, r.err))
		}
	}
	for _, v := range []struct {
		invariant string
		rows      []string
	}{
		{"every transfer ended", unfinished},
		{"every transfer Do reported as applied is in the ledger", missing},
		{"the ledger holds only transfers Do reported as applied", unreported},
	} {
		if len(v.rows) > 0 {
			fmt.Fprintf(&b, "%q, broken by %d:\n\t%s\n", v.invariant, len(v.rows), strings.Join(v.rows, "\n\t"))
		}
	}
	if p := checkSnapshot(balances); p != "" {
		b.WriteString("the final state breaks " + p + "\n")
	}

	want := make(map[int]int64, transferAccounts)
	for id := 1; id <= transferAccounts; id++ {
		want[id] = transferInitial
	}
	for _, l := range ledger {
		want[l.src] -= l.amount
		want[l.dst] += l.amount
	}
	for _, id := range sortedIDs(want) {
		if balances[id] == want[id] {
			continue
		}
		fmt.Fprintf(&b, "\"each balance is its opening balance replayed through the ledger\": account %d holds %d, the ledger gives %d; its ledger rows:\n",
			id, balances[id], want[id])
		for _, l := range ledger {
			if l.src == id || l.dst == id {
				fmt.Fprintf(&b, "\t%+v\n", l)
			}
		}
	}
	return b.String()
}

func sortedIDs(m map[int]int64) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
