package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/asynckit/asynckit/txn"
)

// maxBalance is the largest balance an account may hold, in minor units;
// the schema's CHECK enforces it, and with it no sum of two balances
// overflows an int64.
const maxBalance = 1_000_000_000_000_000

// accountNotFoundError names the account a transfer or a lookup did not find.
type accountNotFoundError struct{ id int64 }

func (e accountNotFoundError) Error() string { return fmt.Sprintf("no account has id %d", e.id) }

var (
	errInsufficientFunds = errors.New("insufficient funds")
	errBalanceLimit      = errors.New("balance limit exceeded")
	errNoSuchUser        = errors.New("no such user")
)

const accountColumns = `id, user_id, balance, created_at`

func scanAccount(row scanner) (account, error) {
	var (
		a      account
		userID sql.NullInt64
	)
	err := row.Scan(&a.ID, &userID, &a.Balance, &a.CreatedAt)
	if userID.Valid {
		a.UserID = &userID.Int64
	}
	a.CreatedAt = a.CreatedAt.UTC()
	return a, err
}

// insertAccount opens an account with an opening balance, written to the
// ledger too. An unknown user is errNoSuchUser.
func (s *store) insertAccount(ctx context.Context, userID *int64, balance int64) (account, error) {
	q := txn.From(ctx, s.db)
	t := now()
	a, err := scanAccount(q.QueryRowContext(ctx,
		`INSERT INTO accounts (user_id, balance, created_at) VALUES ($1, $2, $3) RETURNING `+accountColumns,
		userID, balance, t))
	if k, _ := violation(err); k == foreignKeyViolation {
		return account{}, errNoSuchUser
	}
	if err != nil {
		return account{}, err
	}
	if balance > 0 {
		if _, err := q.ExecContext(ctx, `INSERT INTO ledger (account_id, amount, created_at) VALUES ($1, $2, $3)`, a.ID, balance, t); err != nil {
			return account{}, err
		}
	}
	return a, nil
}

// getAccount reads account id, or an accountNotFoundError.
func (s *store) getAccount(ctx context.Context, id int64) (account, error) {
	a, err := scanAccount(s.reader(ctx).QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return account{}, accountNotFoundError{id}
	}
	return a, err
}

// transfer moves amount from one account to another and writes the
// transfer and its two ledger rows. It must run in a transaction (ctx
// carries it). It never reads a balance and then writes it: the debit is
// one UPDATE that succeeds only if the funds suffice, so concurrent
// transfers cannot overdraw at any isolation level. The two rows are
// updated in id order, so two transfers between the same accounts in
// opposite directions lock them in the same order and cannot deadlock.
func (s *store) transfer(ctx context.Context, from, to, amount int64) (transfer, error) {
	q := txn.From(ctx, s.db)
	first, second := from, to
	if second < first {
		first, second = second, first
	}
	for _, id := range []int64{first, second} {
		if id == from {
			res, err := q.ExecContext(ctx, `UPDATE accounts SET balance = balance - $1 WHERE id = $2 AND balance >= $1`, amount, from)
			if err != nil {
				return transfer{}, err
			}
			if n, err := res.RowsAffected(); err != nil {
				return transfer{}, err
			} else if n == 0 {
				if _, err := s.getAccount(ctx, from); err != nil {
					return transfer{}, err
				}
				return transfer{}, errInsufficientFunds
			}
			continue
		}
		res, err := q.ExecContext(ctx, `UPDATE accounts SET balance = balance + $1 WHERE id = $2`, amount, to)
		if k, _ := violation(err); k == checkViolation {
			return transfer{}, errBalanceLimit
		}
		if err != nil {
			return transfer{}, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return transfer{}, err
		} else if n == 0 {
			return transfer{}, accountNotFoundError{to}
		}
	}
	t := transfer{FromAccount: from, ToAccount: to, Amount: amount, CreatedAt: now()}
	if err := q.QueryRowContext(ctx,
		`INSERT INTO transfers (from_account, to_account, amount, created_at) VALUES ($1, $2, $3, $4) RETURNING id`,
		from, to, amount, t.CreatedAt).Scan(&t.ID); err != nil {
		return transfer{}, err
	}
	if _, err := q.ExecContext(ctx,
		`INSERT INTO ledger (account_id, transfer_id, amount, created_at) VALUES ($1, $2, $3, $4), ($5, $2, $6, $4)`,
		from, t.ID, -amount, t.CreatedAt, to, amount); err != nil {
		return transfer{}, err
	}
	return t, nil
}
