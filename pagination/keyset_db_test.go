package pagination

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/stretchr/testify/require"
)

// database is one real database the keyset suite runs against.
type database struct {
	name    string
	open    func(testing.TB) *sql.DB
	dialect Dialect
	// Column types of the items table.
	idType, intType, timeType string
}

var databases = []database{
	{name: "SQLite", open: openSQLite, dialect: SQLite,
		idType: "INTEGER PRIMARY KEY", intType: "INTEGER", timeType: "DATETIME"},
	{name: "Postgres", open: testenv.Postgres, dialect: Postgres,
		idType: "BIGINT PRIMARY KEY", intType: "INTEGER", timeType: "TIMESTAMPTZ"},
	{name: "MariaDB", open: testenv.MySQL, dialect: MySQL,
		idType: "BIGINT PRIMARY KEY", intType: "INTEGER", timeType: "DATETIME(6)"},
}

// openSQLite is testenv.SQLite on one connection without fsync: the suite
// commits after every page it changes, and durability is no part of what it
// checks, so waiting for the disk would only make it slow.
func openSQLite(tb testing.TB) *sql.DB {
	tb.Helper()
	db := testenv.SQLite(tb)
	db.SetMaxOpenConns(1)
	_, err := db.Exec("PRAGMA synchronous = OFF")
	require.NoError(tb, err)
	return db
}

// item is a row of the items table. Score is nullable.
type item struct {
	ID        int64
	Grp       int64
	Score     *int64
	CreatedAt time.Time
}

// itemCursor is what a client holds between pages: every sort value of
// the last row it saw, sealed by a Codec.
type itemCursor struct {
	ID        int64     `json:"id"`
	Grp       int64     `json:"g"`
	Score     *int64    `json:"s"`
	CreatedAt time.Time `json:"t"`
}

func (it item) value(column string) any {
	switch column {
	case "id":
		return it.ID
	case "grp":
		return it.Grp
	case "score":
		if it.Score == nil {
			return nil
		}
		return *it.Score
	case "created_at":
		return it.CreatedAt
	}
	panic("unknown column " + column)
}

// compareItems orders a and b as ks does, NULLs included; the expected
// order every walk is checked against, computed without a database.
func compareItems(ks Keyset, a, b item) int {
	for _, c := range ks {
		va, vb := a.value(c.Name), b.value(c.Name)
		if va == nil || vb == nil {
			if va == nil && vb == nil {
				continue
			}
			// NULL first means a NULL compares below a value.
			if (va == nil) == (c.Nulls == NullsFirst) {
				return -1
			}
			return 1
		}
		var r int
		switch va := va.(type) {
		case int64:
			r = cmp.Compare(va, vb.(int64))
		case time.Time:
			r = va.Compare(vb.(time.Time))
		}
		if c.Desc {
			r = -r
		}
		if r != 0 {
			return r
		}
	}
	return 0
}

// walkKeysets are the orders the suite pages through: duplicates in the
// first column, a timestamp column, mixed directions, and a nullable
// column with NULLs first and last in both directions.
var walkKeysets = []struct {
	name string
	ks   Keyset
}{
	{"duplicates in the first column, ascending", Keyset{{Name: "grp"}, {Name: "id"}}},
	{"timestamp, newest first", Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}},
	{"mixed directions with a timestamp", Keyset{{Name: "grp"}, {Name: "created_at", Desc: true}, {Name: "id"}}},
	{"nullable, NULLs last, ascending", Keyset{{Name: "score", Nulls: NullsLast}, {Name: "id"}}},
	{"nullable, NULLs last, descending, mixed", Keyset{{Name: "score", Desc: true, Nulls: NullsLast}, {Name: "grp"}, {Name: "id", Desc: true}}},
	{"nullable, NULLs first, with a timestamp", Keyset{{Name: "score", Nulls: NullsFirst}, {Name: "created_at", Desc: true}, {Name: "id"}}},
	{"nullable, NULLs first, descending", Keyset{{Name: "score", Desc: true, Nulls: NullsFirst}, {Name: "id"}}},
}

const (
	walkRows  = 10_000
	walkLimit = 149 // prime, so page boundaries fall everywhere
)

// walkBase is the first created_at; rows spread over a quarter as many
// distinct microsecond-precision instants as there are rows, so
// timestamps repeat.
var walkBase = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func makeItem(r *rand.Rand, id int64, rows int) item {
	it := item{
		ID:        id,
		Grp:       r.Int64N(40),
		CreatedAt: walkBase.Add(time.Duration(r.IntN(rows/4)) * 1_234_567 * time.Microsecond),
	}
	if r.IntN(5) != 0 { // one row in five has a NULL score
		s := r.Int64N(300) - 100
		it.Score = &s
	}
	return it
}

// setupItems creates the items table with an index per keyset and inserts
// n rows in a few multi-row statements.
func setupItems(t testing.TB, db *sql.DB, d database, keysets []Keyset, n int, timeArg func(time.Time) any) []item {
	t.Helper()
	ctx := context.Background()
	_, err := db.ExecContext(ctx, fmt.Sprintf(`CREATE TABLE items (id %s, grp %s NOT NULL, score %s, created_at %s NOT NULL)`,
		d.idType, d.intType, d.intType, d.timeType))
	require.NoError(t, err)
	for i, ks := range keysets {
		var cols []string
		for _, c := range ks {
			col := c.Name
			if c.Desc {
				col += " DESC"
			}
			// Postgres indexes can state the NULL placement the order asks
			// for; SQLite and MariaDB indexes cannot.
			if c.Nulls != NotNull && d.dialect.name == "Postgres" {
				col += " " + c.Nulls.String()
			}
			cols = append(cols, col)
		}
		_, err := db.ExecContext(ctx, fmt.Sprintf("CREATE INDEX items_walk_%d ON items (%s)", i, strings.Join(cols, ", ")))
		require.NoError(t, err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	rows := make([]item, n)
	for i := range rows {
		rows[i] = makeItem(r, int64(i+1), n)
	}
	insertItems(t, db, d.dialect, rows, timeArg)
	return rows
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func insertItems(t testing.TB, db execer, d Dialect, rows []item, timeArg func(time.Time) any) {
	t.Helper()
	const batch = 1000
	for start := 0; start < len(rows); start += batch {
		chunk := rows[start:min(start+batch, len(rows))]
		var q strings.Builder
		q.WriteString("INSERT INTO items (id, grp, score, created_at) VALUES ")
		args := make([]any, 0, 4*len(chunk))
		for i, it := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			if d.dollar {
				n := len(args)
				fmt.Fprintf(&q, "($%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4)
			} else {
				q.WriteString("(?, ?, ?, ?)")
			}
			var score any
			if it.Score != nil {
				score = *it.Score
			}
			args = append(args, it.ID, it.Grp, score, timeArg(it.CreatedAt))
		}
		_, err := db.ExecContext(context.Background(), q.String(), args...)
		require.NoError(t, err)
	}
}

// timeArgFor returns how the suite stores a time in a database: as text in
// the dialect's layout where times are text (SQLite), else as time.Time.
func timeArgFor(d Dialect) func(time.Time) any {
	return func(t time.Time) any {
		v, err := d.Arg(t)
		if err != nil {
			panic(err)
		}
		return v
	}
}

// pager fetches the listing one page at a time, as an HTTP handler would:
// the cursor of each page goes through a Codec to the client and back.
type pager struct {
	db    *sql.DB
	d     Dialect
	ks    Keyset
	codec *Codec
}

// page fetches the page after cursor ("" for the first page).
func (p pager) page(t testing.TB, cursor string) Page[item] {
	t.Helper()
	orderBy, err := p.ks.OrderBy(p.d)
	require.NoError(t, err)
	where, args := "", []any(nil)
	if cursor != "" {
		var c itemCursor
		require.NoError(t, p.codec.Decode(cursor, &c))
		last := item(c)
		values := make([]any, len(p.ks))
		for i, col := range p.ks {
			values[i] = last.value(col.Name)
		}
		where, args, err = p.ks.After(values, p.d)
		require.NoError(t, err)
		where = " WHERE " + where
	}
	q := fmt.Sprintf("SELECT id, grp, score, created_at FROM items%s ORDER BY %s LIMIT %d", where, orderBy, walkLimit+1)
	rows, err := p.db.QueryContext(context.Background(), q, args...)
	require.NoError(t, err, q)
	defer rows.Close()
	var items []item
	for rows.Next() {
		var it item
		var score sql.NullInt64
		require.NoError(t, rows.Scan(&it.ID, &it.Grp, &score, &it.CreatedAt))
		if score.Valid {
			it.Score = &score.Int64
		}
		items = append(items, it)
	}
	require.NoError(t, rows.Err())
	pg, err := NewPage(items, walkLimit, func(last item) (string, error) {
		return p.codec.Encode(itemCursor(last))
	})
	require.NoError(t, err)
	return pg
}

// before fetches the up to walkLimit rows that precede row, in the
// listing's order, as a previous-page link does: Before, the reversed
// order, then the rows reversed.
func (p pager) before(t testing.TB, row item) []item {
	t.Helper()
	values := make([]any, len(p.ks))
	for i, col := range p.ks {
		values[i] = row.value(col.Name)
	}
	where, args, err := p.ks.Before(values, p.d)
	require.NoError(t, err)
	orderBy, err := p.ks.Reverse().OrderBy(p.d)
	require.NoError(t, err)
	q := fmt.Sprintf("SELECT id, grp, score, created_at FROM items WHERE %s ORDER BY %s LIMIT %d", where, orderBy, walkLimit)
	rows, err := p.db.QueryContext(context.Background(), q, args...)
	require.NoError(t, err, q)
	defer rows.Close()
	var items []item
	for rows.Next() {
		var it item
		var score sql.NullInt64
		require.NoError(t, rows.Scan(&it.ID, &it.Grp, &score, &it.CreatedAt))
		if score.Valid {
			it.Score = &score.Int64
		}
		items = append(items, it)
	}
	require.NoError(t, rows.Err())
	slices.Reverse(items)
	return items
}

// walk pages through the whole listing, calling between after each page,
// and returns every row seen in the order seen.
func (p pager) walk(t testing.TB, between func()) []item {
	t.Helper()
	seen, done := p.walkUpTo(t, 2*walkRows/walkLimit, between)
	require.True(t, done, "the walk does not end")
	return seen
}

// walkUpTo is walk that gives up after maxPages pages, reporting whether
// it reached the last page.
func (p pager) walkUpTo(t testing.TB, maxPages int, between func()) (seen []item, done bool) {
	t.Helper()
	cursor := ""
	for range maxPages {
		pg := p.page(t, cursor)
		seen = append(seen, pg.Items...)
		if !pg.HasMore {
			require.Empty(t, pg.NextCursor)
			return seen, true
		}
		require.Len(t, pg.Items, walkLimit)
		cursor = pg.NextCursor
		if between != nil {
			between()
		}
	}
	return seen, false
}

func ids(items []item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func TestKeysetWalk(t *testing.T) {
	t.Parallel()
	codec, err := NewCodec(testKey)
	require.NoError(t, err)
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			db := d.open(t)
			var keysets []Keyset
			for _, w := range walkKeysets {
				keysets = append(keysets, w.ks)
			}
			rows := setupItems(t, db, d, keysets, walkRows, timeArgFor(d.dialect))
			for _, w := range walkKeysets {
				p := pager{db: db, d: d.dialect, ks: w.ks, codec: codec.Bind(w.name)}

				want := slices.Clone(rows)
				slices.SortFunc(want, func(a, b item) int { return compareItems(w.ks, a, b) })

				t.Run(w.name+": every row appears once, in order", func(t *testing.T) {
					got := p.walk(t, nil)
					require.Equal(t, ids(want), ids(got))
				})

				t.Run(w.name+": Before returns the rows just before a row", func(t *testing.T) {
					for _, pos := range []int{0, 1, walkLimit, walkLimit + 1, walkRows / 2, walkRows - 1} {
						got := p.before(t, want[pos])
						require.Equal(t, ids(want[max(0, pos-walkLimit):pos]), ids(got), "before row %d at position %d", want[pos].ID, pos)
					}
				})

				t.Run(w.name+": rows inserted and deleted between pages skip and repeat nothing", func(t *testing.T) {
					r := rand.New(rand.NewPCG(3, uint64(len(w.name))))
					nextID := int64(walkRows + 1)
					var deleted []int64
					timeArg := timeArgFor(d.dialect)
					got := p.walk(t, func() {
						// Each change removes a few existing rows and adds
						// a few new ones anywhere in the order, some with
						// the very values of existing rows.
						var added []item
						for range 4 {
							it := makeItem(r, nextID, walkRows)
							nextID++
							added = append(added, it)
						}
						tx, err := db.BeginTx(context.Background(), nil)
						require.NoError(t, err)
						insertItems(t, tx, d.dialect, added, timeArg)
						gone := []any{r.Int64N(walkRows) + 1, r.Int64N(walkRows) + 1, r.Int64N(walkRows) + 1, r.Int64N(walkRows) + 1}
						q := "DELETE FROM items WHERE id IN (?, ?, ?, ?)"
						if d.dialect.dollar {
							q = "DELETE FROM items WHERE id IN ($1, $2, $3, $4)"
						}
						_, err = tx.ExecContext(context.Background(), q, gone...)
						require.NoError(t, err)
						require.NoError(t, tx.Commit())
						for _, id := range gone {
							deleted = append(deleted, id.(int64))
						}
					})
					defer restoreItems(t, db, d, rows, deleted)

					// Strictly increasing in the keyset's order: in order
					// and nothing repeated, inserted rows included.
					for i := 1; i < len(got); i++ {
						require.Negative(t, compareItems(w.ks, got[i-1], got[i]), "rows %d and %d out of order", got[i-1].ID, got[i].ID)
					}
					seen := map[int64]bool{}
					for _, it := range got {
						seen[it.ID] = true
					}
					for _, it := range rows {
						if !slices.Contains(deleted, it.ID) {
							require.True(t, seen[it.ID], "row %d was present throughout but skipped", it.ID)
						}
					}
					require.NotEmpty(t, deleted)
				})
			}
		})
	}
}

// restoreItems undoes a walk that changed the items table, removing the
// rows it added and putting back those it deleted, so the next walk starts
// from the same data.
func restoreItems(t testing.TB, db *sql.DB, d database, rows []item, deleted []int64) {
	t.Helper()
	q := "DELETE FROM items WHERE id > ?"
	if d.dialect.dollar {
		q = "DELETE FROM items WHERE id > $1"
	}
	_, err := db.ExecContext(context.Background(), q, walkRows)
	require.NoError(t, err)
	slices.Sort(deleted)
	var back []item
	for _, id := range slices.Compact(deleted) {
		back = append(back, rows[id-1])
	}
	insertItems(t, db, d.dialect, back, timeArgFor(d.dialect))
}

// TestSQLiteTimesCompareAsStoredText shows the SQLite timestamp trap and
// its cure. SQLite keeps times as text and compares them as text, while
// modernc.org/sqlite hands a DATETIME column back as a time.Time and binds
// a time.Time as time.Time.String(): a different spelling of the same
// instant, so "created_at = ?" misses the row's own time and the page
// after it starts in the wrong place. The SQLite dialect binds times in the
// stored layout instead.
func TestSQLiteTimesCompareAsStoredText(t *testing.T) {
	t.Parallel()
	const isoLayout = "2006-01-02T15:04:05.000000Z" // as strftime('%Y-%m-%dT%H:%M:%fZ') writes, to the microsecond
	codec, err := NewCodec(testKey)
	require.NoError(t, err)
	ks := Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}
	tests := []struct {
		name        string
		storeLayout string
		dialect     Dialect
		wantCorrect bool
	}{
		{"times stored in SQLiteTimeLayout page correctly with the SQLite dialect", SQLiteTimeLayout, SQLite, true},
		{"the same times bound as time.Time by the driver page wrongly", SQLiteTimeLayout, SQLite.WithTimeLayout(""), false},
		{"ISO 8601 times page correctly with their layout", isoLayout, SQLite.WithTimeLayout(isoLayout), true},
		{"ISO 8601 times bound in another layout page wrongly", isoLayout, SQLite, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := openSQLite(t)
			store := func(tm time.Time) any { return tm.UTC().Format(tt.storeLayout) }
			rows := setupItems(t, db, databases[0], []Keyset{ks}, 2_000, store)

			// The driver reads the text back as a time.Time.
			var back any
			require.NoError(t, db.QueryRow("SELECT created_at FROM items WHERE id = 1").Scan(&back))
			require.IsType(t, time.Time{}, back)

			want := slices.Clone(rows)
			slices.SortFunc(want, func(a, b item) int { return compareItems(ks, a, b) })
			p := pager{db: db, d: tt.dialect, ks: ks, codec: codec}
			got, done := p.walkUpTo(t, 2*walkRows/walkLimit, nil)
			if tt.wantCorrect {
				require.True(t, done)
				require.Equal(t, ids(want), ids(got))
				return
			}
			require.NotEqual(t, ids(want), ids(got), "binding time.Time must have selected the wrong rows")
		})
	}
}
