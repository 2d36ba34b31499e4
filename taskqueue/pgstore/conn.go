package pgstore

import (
	"context"
	"database/sql"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/asynckit/asynckit/txn"
)

// querier runs the store's statements on either of the two connections it
// may be given: database/sql (a *sql.DB, or the *sql.Tx of the caller's
// transaction) or a native pgx pool. Both take the same SQL and the same
// argument types, and both scan into the same destinations.
type querier interface {
	query(ctx context.Context, sql string, args ...any) (rows, error)
	exec(ctx context.Context, sql string, args ...any) (int64, error)
}

// rows is what *sql.Rows and pgx.Rows have in common.
type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// sqlQuerier runs statements through database/sql.
type sqlQuerier struct{ q txn.Querier }

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

func (s sqlQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	r, err := s.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (s sqlQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// poolQuerier runs statements natively through a pgx pool.
type poolQuerier struct{ p *pgxpool.Pool }

func (p poolQuerier) query(ctx context.Context, query string, args ...any) (rows, error) {
	return p.p.Query(ctx, query, args...)
}

func (p poolQuerier) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.p.Exec(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// queryRows runs query and calls scan for each row, then closes the rows.
func queryRows(ctx context.Context, q querier, scan func(rows) error, query string, args ...any) error {
	r, err := q.query(ctx, query, args...)
	if err != nil {
		return err
	}
	defer r.Close()
	for r.Next() {
		if err := scan(r); err != nil {
			return err
		}
	}
	return r.Err()
}
