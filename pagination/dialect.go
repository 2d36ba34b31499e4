package pagination

import (
	"database/sql/driver"
	"fmt"
	"reflect"
	"time"
)

// SQLiteTimeLayout is the layout in which the SQLite dialect binds time.Time
// values, after converting them to UTC: the layout modernc.org/sqlite writes
// with the DSN parameter _time_format=sqlite, which SQLite's date functions
// also read. In UTC its text sorts in time order, which is what a keyset
// comparison on a text column relies on.
const SQLiteTimeLayout = "2006-01-02 15:04:05.999999999-07:00"

// A Dialect is what a Keyset needs to know about a database: its
// placeholder style, whether it compares row values well, how it places
// NULLs, and how it stores times. Use Postgres, MySQL or SQLite, adjusted
// with Offset and WithTimeLayout; the zero Dialect is invalid and every
// Keyset method refuses it.
//
// A Dialect is a small value; its methods return modified copies.
type Dialect struct {
	name   string
	dollar bool // $1, $2, … rather than ?
	offset int  // placeholders already used by the rest of the query
	// rowValues: emit (a, b) > (x, y) when every column is NOT NULL and
	// shares one direction, because the planner turns it into an index
	// range; otherwise the bounded expanded form is used.
	rowValues bool
	// nullsClause: ORDER BY accepts NULLS FIRST / NULLS LAST.
	nullsClause bool
	// nullsLow: NULL sorts below every value, so ASC puts NULLs first.
	nullsLow bool
	// timeLayout, when set, binds time.Time arguments as UTC text in it.
	timeLayout string
}

var (
	// Postgres numbers its placeholders $1, $2, …, compares row values
	// through the index, and orders NULLs with NULLS FIRST / NULLS LAST.
	// Times are bound as time.Time.
	Postgres = Dialect{name: "Postgres", dollar: true, rowValues: true, nullsClause: true}

	// MySQL, for MySQL 8 and MariaDB, uses ? placeholders. It never emits
	// row-value comparisons: MariaDB does not turn them into an index range
	// and scans instead. MySQL has no NULLS FIRST / NULLS LAST; where a
	// column asks for the placement MySQL does not give natively (NULLs
	// sort lowest there), OrderBy adds a "col IS NULL" term, which no index
	// can serve. Times are bound as time.Time.
	MySQL = Dialect{name: "MySQL", nullsLow: true}

	// SQLite uses ? placeholders, compares row values through the index and
	// orders NULLs with NULLS FIRST / NULLS LAST (SQLite 3.30 and later). It
	// binds time.Time values as UTC text in SQLiteTimeLayout, because
	// SQLite compares stored times as text: binding a time.Time as the
	// driver would (modernc.org/sqlite writes time.Time.String() by default)
	// compares a differently spelled text and selects the wrong page. Use
	// WithTimeLayout to match the layout your times are stored in.
	SQLite = Dialect{name: "SQLite", rowValues: true, nullsClause: true, nullsLow: true, timeLayout: SQLiteTimeLayout}
)

// String returns the dialect's name, with its placeholder offset if any.
func (d Dialect) String() string {
	if d.name == "" {
		return "invalid Dialect"
	}
	if d.offset != 0 {
		return fmt.Sprintf("%s (offset %d)", d.name, d.offset)
	}
	return d.name
}

// Offset returns d for a query that already has n arguments before the
// keyset fragment: with $n placeholders, the fragment's numbering starts at
// $n+1. With ? placeholders it changes nothing. A negative n makes every
// Keyset method return an error.
func (d Dialect) Offset(n int) Dialect {
	d.offset = n
	return d
}

// WithTimeLayout returns d binding time.Time values (and the times that
// driver.Valuer values such as sql.NullTime hold) as text: converted to UTC
// and formatted with layout. Use it for SQLite when times are stored in
// another layout than SQLiteTimeLayout, for example
// "2006-01-02T15:04:05.000Z" for times written by strftime('%Y-%m-%dT%H:%M:%fZ').
// Stored times must be UTC and of one layout whose text sorts in time order
// (fixed width, or fractions trimmed of trailing zeros followed by a
// character that sorts below the digits, as SQLiteTimeLayout does).
//
// An empty layout binds times as they are, leaving the text to the driver.
func (d Dialect) WithTimeLayout(layout string) Dialect {
	d.timeLayout = layout
	return d
}

// Arg returns v as After binds it for d: a driver.Valuer is replaced by its
// value, a pointer by what it points to (nil for a nil pointer), and, when d
// has a time layout, a time.Time by its UTC text. Use it for arguments of
// your own filters that compare with the same columns. It fails only when a
// Valuer does.
func (d Dialect) Arg(v any) (any, error) {
	v, err := normalize(v)
	if err != nil {
		return nil, err
	}
	if t, ok := v.(time.Time); ok && d.timeLayout != "" {
		return t.UTC().Format(d.timeLayout), nil
	}
	return v, nil
}

// normalize resolves Valuers and pointers, so that a NULL is recognised as
// nil whatever type carries it; a NULL bound as "col = ?" would match
// nothing and silently drop rows.
func normalize(v any) (any, error) {
	for range 8 { // a Valuer may return another Valuer; stop eventually
		if v == nil {
			return nil, nil
		}
		rv := reflect.ValueOf(v)
		if rv.Kind() == reflect.Pointer {
			if rv.IsNil() {
				return nil, nil
			}
		}
		if valuer, ok := v.(driver.Valuer); ok {
			dv, err := valuer.Value()
			if err != nil {
				return nil, fmt.Errorf("pagination: value of %T: %w", v, err)
			}
			v = dv
			continue
		}
		if rv.Kind() == reflect.Pointer {
			v = rv.Elem().Interface()
			continue
		}
		return v, nil
	}
	return nil, fmt.Errorf("pagination: value of %T does not resolve to a plain value", v)
}

func (d Dialect) validate() error {
	if d.name == "" {
		return fmt.Errorf("pagination: zero Dialect; use Postgres, MySQL or SQLite")
	}
	if d.offset < 0 {
		return fmt.Errorf("pagination: negative placeholder offset %d", d.offset)
	}
	return nil
}
