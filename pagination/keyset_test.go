package pagination

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	tsKeyset    = Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}
	mixedKeyset = Keyset{{Name: "grp"}, {Name: "created_at", Desc: true}, {Name: "id"}}
)

func TestKeysetAfterSQL(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 29, 20, 33, 38, 500_000_000, time.UTC)
	tests := []struct {
		name     string
		ks       Keyset
		values   []any
		d        Dialect
		wantSQL  string
		wantArgs []any
	}{
		{
			name: "one column is a plain comparison", ks: Keyset{{Name: "id"}}, values: []any{7}, d: Postgres,
			wantSQL: "(id > $1)", wantArgs: []any{7},
		},
		{
			name: "one descending column", ks: Keyset{{Name: "t.id", Desc: true}}, values: []any{7}, d: MySQL,
			wantSQL: "(t.id < ?)", wantArgs: []any{7},
		},
		{
			name: "one direction on Postgres is a row comparison", ks: tsKeyset, values: []any{at, int64(9)}, d: Postgres,
			wantSQL: "((created_at, id) < ($1, $2))", wantArgs: []any{at, int64(9)},
		},
		{
			name: "placeholders start after the offset", ks: tsKeyset, values: []any{at, int64(9)}, d: Postgres.Offset(2),
			wantSQL: "((created_at, id) < ($3, $4))", wantArgs: []any{at, int64(9)},
		},
		{
			name: "one direction on MySQL is the bounded expanded form", ks: tsKeyset, values: []any{at, int64(9)}, d: MySQL,
			wantSQL:  "(created_at <= ? AND (created_at < ? OR (created_at = ? AND id < ?)))",
			wantArgs: []any{at, at, at, int64(9)},
		},
		{
			name: "one direction on SQLite is a row comparison with the time as UTC text", ks: tsKeyset,
			values: []any{at.In(time.FixedZone("X", 3600)), int64(9)}, d: SQLite,
			wantSQL: "((created_at, id) < (?, ?))", wantArgs: []any{"2026-11-29 20:33:38.5+00:00", int64(9)},
		},
		{
			name: "mixed directions are bounded on the first column, each $n bound once", ks: mixedKeyset,
			values: []any{3, at, int64(9)}, d: Postgres,
			wantSQL:  "(grp >= $1 AND (grp > $1 OR (grp = $1 AND (created_at < $2 OR (created_at = $2 AND id > $3)))))",
			wantArgs: []any{3, at, int64(9)},
		},
		{
			name: "mixed directions with ? repeat the arguments", ks: mixedKeyset,
			values: []any{3, at, int64(9)}, d: MySQL,
			wantSQL:  "(grp >= ? AND (grp > ? OR (grp = ? AND (created_at < ? OR (created_at = ? AND id > ?)))))",
			wantArgs: []any{3, 3, 3, at, at, int64(9)},
		},
		{
			name: "a nullable column with NULLs last includes the NULL rows after a value",
			ks:   Keyset{{Name: "score", Nulls: NullsLast}, {Name: "id"}}, values: []any{5, 1}, d: Postgres,
			wantSQL:  "((score >= $1 OR score IS NULL) AND ((score > $1 OR score IS NULL) OR (score = $1 AND id > $2)))",
			wantArgs: []any{5, 1},
		},
		{
			name: "after a NULL sorted last only NULLs follow",
			ks:   Keyset{{Name: "score", Nulls: NullsLast}, {Name: "id"}}, values: []any{nil, 1}, d: Postgres,
			wantSQL: "(score IS NULL AND id > $1)", wantArgs: []any{1},
		},
		{
			name: "after a value, NULLs sorted first are behind",
			ks:   Keyset{{Name: "score", Desc: true, Nulls: NullsFirst}, {Name: "id"}}, values: []any{5, 1}, d: MySQL,
			wantSQL:  "(score <= ? AND (score < ? OR (score = ? AND id > ?)))",
			wantArgs: []any{5, 5, 5, 1},
		},
		{
			name: "after a NULL sorted first every value follows",
			ks:   Keyset{{Name: "score", Nulls: NullsFirst}, {Name: "id"}}, values: []any{nil, 1}, d: SQLite,
			wantSQL: "((score IS NOT NULL OR (score IS NULL AND id > ?)))", wantArgs: []any{1},
		},
		{
			name: "a nullable middle column",
			ks:   Keyset{{Name: "grp"}, {Name: "score", Nulls: NullsLast}, {Name: "id"}}, values: []any{2, nil, 1}, d: Postgres,
			wantSQL:  "(grp >= $1 AND (grp > $1 OR (grp = $1 AND score IS NULL AND id > $2)))",
			wantArgs: []any{2, 1},
		},
		{
			name:   "a NULL carried by sql.NullInt64 or a nil pointer is a NULL",
			ks:     Keyset{{Name: "a", Nulls: NullsLast}, {Name: "b", Nulls: NullsLast}, {Name: "id"}},
			values: []any{sql.NullInt64{}, (*int)(nil), 1}, d: Postgres,
			wantSQL: "(a IS NULL AND b IS NULL AND id > $1)", wantArgs: []any{1},
		},
		{
			name: "a Valid sql.NullTime is its time, as text on SQLite",
			ks:   Keyset{{Name: "t", Nulls: NullsFirst}, {Name: "id"}}, values: []any{sql.NullTime{Time: at, Valid: true}, ptr(int64(4))}, d: SQLite,
			wantSQL:  "(t >= ? AND (t > ? OR (t = ? AND id > ?)))",
			wantArgs: []any{"2026-11-29 20:33:38.5+00:00", "2026-11-29 20:33:38.5+00:00", "2026-11-29 20:33:38.5+00:00", int64(4)},
		},
		{
			name: "SQLite with an empty time layout binds the time itself", ks: Keyset{{Name: "t"}}, values: []any{at},
			d: SQLite.WithTimeLayout(""), wantSQL: "(t > ?)", wantArgs: []any{at},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sql, args, err := tt.ks.After(tt.values, tt.d)
			require.NoError(t, err)
			require.Equal(t, tt.wantSQL, sql)
			require.Equal(t, tt.wantArgs, args)
			require.Len(t, args, strings.Count(sql, "?")+distinctDollars(sql), "one argument per placeholder")
		})
	}
}

// distinctDollars counts the distinct $n placeholders in s.
func distinctDollars(s string) int {
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r != '$' && (r < '0' || r > '9') }) {
		if strings.HasPrefix(f, "$") {
			seen[f] = true
		}
	}
	return len(seen)
}

func ptr[T any](v T) *T { return &v }

func TestKeysetBeforeIsAfterReversed(t *testing.T) {
	t.Parallel()
	ks := Keyset{{Name: "score", Nulls: NullsLast}, {Name: "created_at", Desc: true}, {Name: "id"}}
	require.Equal(t, Keyset{{Name: "score", Desc: true, Nulls: NullsFirst}, {Name: "created_at"}, {Name: "id", Desc: true}}, ks.Reverse())
	require.Equal(t, ks, ks.Reverse().Reverse())
	sql, args, err := ks.Before([]any{5, "t", 9}, MySQL)
	require.NoError(t, err)
	require.Equal(t, "(score <= ? AND (score < ? OR (score = ? AND (created_at > ? OR (created_at = ? AND id < ?)))))", sql)
	require.Equal(t, []any{5, 5, 5, "t", "t", 9}, args)
}

func TestKeysetOrderBy(t *testing.T) {
	t.Parallel()
	nullable := Keyset{{Name: "a", Nulls: NullsLast}, {Name: "b", Desc: true, Nulls: NullsLast}, {Name: "c", Nulls: NullsFirst}, {Name: "d", Desc: true, Nulls: NullsFirst}, {Name: "id"}}
	tests := []struct {
		name string
		ks   Keyset
		d    Dialect
		want string
	}{
		{"NOT NULL columns name their direction only", tsKeyset, Postgres, "created_at DESC, id DESC"},
		{"mixed directions", mixedKeyset, MySQL, "grp ASC, created_at DESC, id ASC"},
		{"Postgres states every NULL placement", nullable, Postgres,
			"a ASC NULLS LAST, b DESC NULLS LAST, c ASC NULLS FIRST, d DESC NULLS FIRST, id ASC"},
		{"SQLite states every NULL placement", nullable, SQLite,
			"a ASC NULLS LAST, b DESC NULLS LAST, c ASC NULLS FIRST, d DESC NULLS FIRST, id ASC"},
		{"MySQL emulates the placements it does not give natively", nullable, MySQL,
			"a IS NULL, a ASC, b DESC, c ASC, d IS NULL DESC, d DESC, id ASC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ks.OrderBy(tt.d)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

type failingValuer struct{}

func (failingValuer) Value() (driver.Value, error) { return nil, errors.New("boom") }

func TestKeysetRejectsBadInput(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 64)
	tests := []struct {
		name   string
		ks     Keyset
		values []any
		d      Dialect
		want   string
	}{
		{"an empty keyset", Keyset{}, nil, Postgres, "empty Keyset"},
		{"a nil keyset", nil, nil, Postgres, "empty Keyset"},
		{"an injected name", Keyset{{Name: "id; DROP TABLE users"}}, []any{1}, Postgres, `"id; DROP TABLE users" is not an identifier`},
		{"a quoted name", Keyset{{Name: `"id"`}}, []any{1}, Postgres, "is not an identifier"},
		{"a name with a space", Keyset{{Name: "created at"}}, []any{1}, Postgres, "is not an identifier"},
		{"a name starting with a digit", Keyset{{Name: "1id"}}, []any{1}, Postgres, "is not an identifier"},
		{"an empty name", Keyset{{Name: ""}}, []any{1}, Postgres, "is not an identifier"},
		{"a name with two dots", Keyset{{Name: "s.t.id"}}, []any{1}, Postgres, "is not an identifier"},
		{"a name with a trailing dot", Keyset{{Name: "t."}}, []any{1}, Postgres, "is not an identifier"},
		{"a comment", Keyset{{Name: "id--"}}, []any{1}, Postgres, "is not an identifier"},
		{"a non-ASCII name", Keyset{{Name: "größe"}}, []any{1}, Postgres, "is not an identifier"},
		{"a name over 63 bytes", Keyset{{Name: long}}, []any{1}, Postgres, "is not an identifier"},
		{"a repeated column", Keyset{{Name: "id"}, {Name: "ID"}}, []any{1, 2}, Postgres, "ID appears twice"},
		{"an unknown Nulls", Keyset{{Name: "a", Nulls: 3}, {Name: "id"}}, []any{1, 2}, Postgres, "unknown Nulls(3)"},
		{"a nullable last column", Keyset{{Name: "id", Nulls: NullsLast}}, []any{1}, Postgres, "last column id is nullable"},
		{"too many columns", make(Keyset, MaxColumns+1), nil, Postgres, "at most 16"},
		{"too few values", tsKeyset, []any{1}, Postgres, "1 values for a Keyset of 2 columns"},
		{"too many values", tsKeyset, []any{1, 2, 3}, Postgres, "3 values for a Keyset of 2 columns"},
		{"nil values", tsKeyset, nil, Postgres, "0 values"},
		{"nil for a NOT NULL column", tsKeyset, []any{nil, 1}, Postgres, "nil value for NOT NULL column created_at"},
		{"an invalid sql.Null for a NOT NULL column", tsKeyset, []any{sql.NullTime{}, 1}, Postgres, "nil value for NOT NULL column created_at"},
		{"a failing Valuer", tsKeyset, []any{failingValuer{}, 1}, Postgres, "boom"},
		{"the zero Dialect", tsKeyset, []any{1, 2}, Dialect{}, "zero Dialect"},
		{"a negative offset", tsKeyset, []any{1, 2}, Postgres.Offset(-1), "negative placeholder offset"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is an error", func(t *testing.T) {
			sql, args, err := tt.ks.After(tt.values, tt.d)
			require.ErrorContains(t, err, tt.want)
			require.Empty(t, sql)
			require.Nil(t, args)
			_, _, err = tt.ks.Before(tt.values, tt.d)
			require.ErrorContains(t, err, tt.want)
			if _, err := tt.ks.OrderBy(tt.d); tt.ks.Validate() != nil || tt.d.validate() != nil {
				require.ErrorContains(t, err, tt.want, "OrderBy refuses the same keyset or dialect")
			} else {
				require.NoError(t, err)
			}
		})
	}
}

func TestKeysetAcceptsQualifiedNames(t *testing.T) {
	t.Parallel()
	ks := Keyset{{Name: "users.created_at"}, {Name: "_Users2.id"}}
	require.NoError(t, ks.Validate())
	got, err := ks.OrderBy(Postgres)
	require.NoError(t, err)
	require.Equal(t, "users.created_at ASC, _Users2.id ASC", got)
}

func TestDialectString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "Postgres", Postgres.String())
	require.Equal(t, "Postgres (offset 3)", Postgres.Offset(3).String())
	require.Equal(t, "invalid Dialect", Dialect{}.String())
	require.Equal(t, "NULLS LAST", NullsLast.String())
}

func TestDialectArg(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.FixedZone("CET", 3600))
	tests := []struct {
		name string
		d    Dialect
		in   any
		want any
	}{
		{"Postgres binds a time as it is", Postgres, at, at},
		{"SQLite binds a time as UTC text", SQLite, at, "2026-01-02 02:04:05.6+00:00"},
		{"SQLite with a layout of its own", SQLite.WithTimeLayout("2006-01-02T15:04:05.000Z"), at, "2026-01-02T02:04:05.600Z"},
		{"a pointer is what it points to", SQLite, &at, "2026-01-02 02:04:05.6+00:00"},
		{"a nil pointer is NULL", Postgres, (*time.Time)(nil), nil},
		{"a Valid sql.NullString is its string", MySQL, sql.NullString{String: "x", Valid: true}, "x"},
		{"an invalid sql.NullTime is NULL", SQLite, sql.NullTime{}, nil},
		{"other values pass through", MySQL, int64(3), int64(3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.d.Arg(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	t.Run("a failing Valuer is an error", func(t *testing.T) {
		_, err := Postgres.Arg(failingValuer{})
		require.ErrorContains(t, err, "value of pagination.failingValuer: boom")
	})
	t.Run("a Valuer that never yields a plain value is an error, not a hang", func(t *testing.T) {
		_, err := Postgres.Arg(selfValuer{})
		require.ErrorContains(t, err, "does not resolve to a plain value")
	})
}

// selfValuer is a broken Valuer whose value is itself.
type selfValuer struct{}

func (selfValuer) Value() (driver.Value, error) { return selfValuer{}, nil }
