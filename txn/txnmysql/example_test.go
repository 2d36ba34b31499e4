package txnmysql_test

import (
	"context"
	"database/sql"
	"log"

	_ "github.com/go-sql-driver/mysql"

	"github.com/asynckit/asynckit/txn"
	"github.com/asynckit/asynckit/txn/txnmysql"
)

// Both classifiers go to every outermost Do on MySQL or MariaDB. This
// example needs a server, so it is compiled but not run.
func ExampleRetryable() {
	db, err := sql.Open("mysql", "root@tcp(127.0.0.1:3306)/bank?parseTime=true")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	err = txn.Do(context.Background(), db, func(ctx context.Context, tx *sql.Tx) error {
		var balance int64
		// FOR UPDATE locks the row until the commit; a deadlock with
		// another transfer is error 1213, and Do runs fn again.
		if err := tx.QueryRowContext(ctx, "SELECT balance FROM accounts WHERE id = ? FOR UPDATE", 1).Scan(&balance); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = ? WHERE id = ?", balance-10, 1)
		return err
	}, txn.RetryIf(txnmysql.Retryable), txn.CommitUnknownIf(txnmysql.ConnectionLost))
	if err != nil {
		log.Print(err)
	}
}
