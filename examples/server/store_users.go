package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/txn"
)

// errUserNotFound is returned for an id no user has.
var errUserNotFound = errors.New("user not found")

const userColumns = `id, username, email, full_name, version, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanUser(row scanner) (user, error) {
	var u user
	err := row.Scan(&u.ID, &u.Username, &u.Email, &u.FullName, &u.Version, &u.CreatedAt, &u.UpdatedAt)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return u, err
}

// getUser reads user id, or errUserNotFound.
func (s *store) getUser(ctx context.Context, id int64) (user, error) {
	u, err := scanUser(s.reader(ctx).QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, errUserNotFound
	}
	return u, err
}

// insertUser stores a new user from in, which must be valid.
func (s *store) insertUser(ctx context.Context, in userInput) (user, error) {
	t := now()
	return scanUser(txn.From(ctx, s.db).QueryRowContext(ctx,
		`INSERT INTO users (username, email, full_name, name_key, created_at, updated_at)
		 VALUES ($1, $2, $3, $4, $5, $5) RETURNING `+userColumns,
		in.Username, in.Email, in.FullName, strings.ToLower(in.FullName), t))
}

// updateUser replaces user id's fields with in and counts a new version,
// or returns errUserNotFound.
func (s *store) updateUser(ctx context.Context, id int64, in userInput) (user, error) {
	u, err := scanUser(txn.From(ctx, s.db).QueryRowContext(ctx,
		`UPDATE users SET username = $1, email = $2, full_name = $3, name_key = $4,
		        version = version + 1, updated_at = $5
		 WHERE id = $6 RETURNING `+userColumns,
		in.Username, in.Email, in.FullName, strings.ToLower(in.FullName), now(), id))
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, errUserNotFound
	}
	return u, err
}

// deleteUser deletes user id, or returns errUserNotFound.
func (s *store) deleteUser(ctx context.Context, id int64) error {
	res, err := txn.From(ctx, s.db).ExecContext(ctx, `DELETE FROM users WHERE id = $1`, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return errUserNotFound
	}
	return nil
}

// usersByID is the keyset of user listings: by id, ascending.
var usersByID = pagination.Keyset{{Name: "id"}}

// searchUsers returns up to limit users after id after (0: from the
// start), in id order, whose username or lower-cased full name starts with
// prefix, which must be lower case ("" matches every user).
func (s *store) searchUsers(ctx context.Context, prefix string, after int64, limit int) ([]user, error) {
	var (
		where []string
		args  []any
	)
	if prefix != "" {
		args = append(args, likePrefix(prefix))
		where = append(where, `(username LIKE $1 ESCAPE '\' OR name_key LIKE $1 ESCAPE '\')`)
	}
	if after > 0 {
		cond, condArgs, err := usersByID.After([]any{after}, s.keyset.Offset(len(args)))
		if err != nil {
			return nil, err
		}
		where, args = append(where, cond), append(args, condArgs...)
	}
	order, err := usersByID.OrderBy(s.keyset)
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + userColumns + ` FROM users`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY %s LIMIT $%d`, order, len(args))
	rows, err := s.reader(ctx).QueryContext(ctx, q, args...)
	return scanAll(rows, err, scanUser)
}

// scanAll reads every row of a query with scan. It closes rows.
func scanAll[T any](rows *sql.Rows, err error, scan func(scanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func scanOne[T any](row scanner) (T, error) {
	var v T
	err := row.Scan(&v)
	return v, err
}

// likePrefix returns the LIKE pattern, with escape character \, that
// matches the strings starting with prefix.
func likePrefix(prefix string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(prefix) + "%"
}

// allUsers yields every user in id order, reading batch users per query,
// so that a caller can stream any number of them in bounded memory and no
// query holds a connection for long.
func (s *store) allUsers(ctx context.Context, batch int) iter.Seq2[user, error] {
	return func(yield func(user, error) bool) {
		var after int64
		for {
			page, err := s.searchUsers(ctx, "", after, batch)
			if err != nil {
				yield(user{}, err)
				return
			}
			for _, u := range page {
				if !yield(u, nil) {
					return
				}
			}
			if len(page) < batch {
				return
			}
			after = page[len(page)-1].ID
		}
	}
}

// takenNames returns which of the usernames and emails are already held by
// users, as two sets.
func (s *store) takenNames(ctx context.Context, usernames, emails []string) (map[string]bool, map[string]bool, error) {
	takenU, takenE := map[string]bool{}, map[string]bool{}
	q := txn.From(ctx, s.db)
	for _, c := range []struct {
		column string
		values []string
		into   map[string]bool
	}{{"username", usernames, takenU}, {"email", emails, takenE}} {
		for chunk := range chunks(c.values, 500) {
			args := make([]any, len(chunk))
			marks := make([]string, len(chunk))
			for i, v := range chunk {
				args[i], marks[i] = v, fmt.Sprintf("$%d", i+1)
			}
			rows, err := q.QueryContext(ctx, `SELECT `+c.column+` FROM users WHERE `+c.column+` IN (`+strings.Join(marks, ",")+`)`, args...)
			found, err := scanAll(rows, err, scanOne[string])
			if err != nil {
				return nil, nil, err
			}
			for _, v := range found {
				c.into[v] = true
			}
		}
	}
	return takenU, takenE, nil
}

// insertUsers stores valid users with multi-row INSERTs and returns their
// ids.
func (s *store) insertUsers(ctx context.Context, in []userInput) ([]int64, error) {
	q := txn.From(ctx, s.db)
	t := now()
	ids := make([]int64, 0, len(in))
	for chunk := range chunks(in, 200) {
		var (
			sb   strings.Builder
			args = make([]any, 0, 4*len(chunk)+1)
		)
		args = append(args, t)
		sb.WriteString(`INSERT INTO users (username, email, full_name, name_key, created_at, updated_at) VALUES `)
		for i, u := range chunk {
			if i > 0 {
				sb.WriteByte(',')
			}
			n := len(args)
			fmt.Fprintf(&sb, "($%d, $%d, $%d, $%d, $1, $1)", n+1, n+2, n+3, n+4)
			args = append(args, u.Username, u.Email, u.FullName, strings.ToLower(u.FullName))
		}
		sb.WriteString(` RETURNING id`)
		rows, err := q.QueryContext(ctx, sb.String(), args...)
		got, err := scanAll(rows, err, scanOne[int64])
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// chunks yields s in pieces of at most n.
func chunks[T any](s []T, n int) iter.Seq[[]T] {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}
