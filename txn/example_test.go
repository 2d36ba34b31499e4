package txn_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/asynckit/asynckit/txn"
)

// openExampleDB opens a SQLite database in a temporary directory with an
// accounts table. _txlock=immediate makes every read-write transaction take
// SQLite's write lock at BEGIN, the locking a read-then-write transaction
// needs there.
func openExampleDB() (db *sql.DB, cleanup func()) {
	dir, err := os.MkdirTemp("", "txn-example")
	if err != nil {
		log.Fatal(err)
	}
	db, err = sql.Open("sqlite", "file:"+filepath.Join(dir, "bank.db")+"?_txlock=immediate&_pragma=busy_timeout(5000)")
	if err != nil {
		log.Fatal(err)
	}
	for _, stmt := range []string{
		"CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL)",
		"INSERT INTO accounts (name, balance) VALUES ('alice', 100), ('bob', 20)",
	} {
		if _, err := db.Exec(stmt); err != nil {
			log.Fatal(err)
		}
	}
	return db, func() { _ = db.Close(); _ = os.RemoveAll(dir) }
}

var ErrInsufficientFunds = errors.New("insufficient funds")

// transfer moves amount between two accounts in one transaction, or inside
// the caller's, if ctx carries one.
func transfer(ctx context.Context, db *sql.DB, from, to string, amount int) error {
	return txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		var balance int
		if err := tx.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE name = ?", from).Scan(&balance); err != nil {
			return fmt.Errorf("account %s: %w", from, err)
		}
		if balance < amount {
			return fmt.Errorf("%s has %d: %w", from, balance, ErrInsufficientFunds)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE name = ?", amount, from); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE name = ?", amount, to)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("account %s: %w", to, sql.ErrNoRows)
		}
		return nil
	})
}

func balances(db *sql.DB) string {
	var a, b int
	if err := db.QueryRow("SELECT (SELECT balance FROM accounts WHERE name = 'alice'), (SELECT balance FROM accounts WHERE name = 'bob')").Scan(&a, &b); err != nil {
		log.Fatal(err)
	}
	return fmt.Sprintf("alice=%d bob=%d", a, b)
}

// A transfer either applies whole or not at all: the refused one changes
// nothing, and its error comes back unchanged for errors.Is.
func Example_transfer() {
	db, cleanup := openExampleDB()
	defer cleanup()
	ctx := context.Background()

	fmt.Println(transfer(ctx, db, "alice", "bob", 30))
	err := transfer(ctx, db, "bob", "alice", 500)
	fmt.Println(err, errors.Is(err, ErrInsufficientFunds))
	fmt.Println(transfer(ctx, db, "alice", "carol", 10))
	fmt.Println(balances(db))
	// Output:
	// <nil>
	// bob has 50: insufficient funds true
	// account carol: sql: no rows in result set
	// alice=70 bob=50
}

// A batch runs each operation in a nested Do, that is a savepoint: a failed
// operation is undone alone and reported, and the others commit together.
func Example_batchWithPartialFailure() {
	db, cleanup := openExampleDB()
	defer cleanup()
	ctx := context.Background()

	ops := []struct {
		from, to string
		amount   int
	}{
		{"alice", "bob", 10},
		{"bob", "alice", 1000}, // refused
		{"alice", "nobody", 5}, // unknown account: its debit is undone
		{"bob", "alice", 15},
	}
	results := make([]error, len(ops))
	err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		for i, op := range ops {
			// transfer's own Do nests in this transaction.
			results[i] = transfer(ctx, db, op.from, op.to, op.amount)
		}
		return nil
	})
	fmt.Println("batch:", err)
	for i, r := range results {
		fmt.Printf("op %d: %v\n", i, r)
	}
	fmt.Println(balances(db))
	// Output:
	// batch: <nil>
	// op 0: <nil>
	// op 1: bob has 30: insufficient funds
	// op 2: account nobody: sql: no rows in result set
	// op 3: <nil>
	// alice=105 bob=15
}

// Invalidating a cache in AfterCommit keeps readers from caching a value
// that is then rolled back, and from reading the old value back into the
// cache before the new one is committed.
func ExampleAfterCommit() {
	db, cleanup := openExampleDB()
	defer cleanup()
	ctx := context.Background()

	cache := map[string]int{"alice": 100} // stands for any cache
	setBalance := func(ctx context.Context, name string, balance int, fail bool) error {
		return txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = ? WHERE name = ?", balance, name); err != nil {
				return err
			}
			if err := txn.AfterCommit(ctx, func(context.Context) { delete(cache, name) }); err != nil {
				return err
			}
			if fail {
				return errors.New("validation failed")
			}
			_, stillCached := cache[name]
			fmt.Println("inside the transaction, cached:", stillCached)
			return nil
		})
	}

	fmt.Println(setBalance(ctx, "alice", 1, true))
	fmt.Println("after the rollback:", cache)
	fmt.Println(setBalance(ctx, "alice", 60, false))
	fmt.Println("after the commit:", cache)
	// Output:
	// validation failed
	// after the rollback: map[alice:100]
	// inside the transaction, cached: true
	// <nil>
	// after the commit: map[]
}
