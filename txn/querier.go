package txn

import (
	"context"
	"database/sql"
)

// Querier is what *sql.DB, *sql.Tx and *sql.Conn have in common for running
// statements: code written against it runs inside or outside a transaction.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var (
	_ Querier = (*sql.DB)(nil)
	_ Querier = (*sql.Tx)(nil)
	_ Querier = (*sql.Conn)(nil)
)

// From returns the transaction ctx carries when it is a transaction on db,
// and db itself otherwise (no transaction in ctx, or one on another *sql.DB).
// It costs one context lookup and does not allocate. Once the transaction
// has ended its statements fail with sql.ErrTxDone rather than run outside
// it.
//
// From panics when ctx or db is nil, as net/http's Handle does with a nil
// handler: there is nothing sensible to return, and a *sql.Row cannot carry
// the error.
func From(ctx context.Context, db *sql.DB) Querier {
	if ctx == nil {
		panic("txn: From with a nil context")
	}
	if db == nil {
		panic("txn: From with a nil *sql.DB")
	}
	if st, ok := ctx.Value(ctxKey{}).(*state); ok && st.db == db {
		return st.tx
	}
	return db
}
