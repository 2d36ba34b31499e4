package pagination

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Nulls says whether a sort column can hold NULL, and where its NULLs sort.
type Nulls uint8

const (
	// NotNull declares a column that never holds NULL; After refuses a nil
	// value for it. The zero value.
	NotNull Nulls = iota
	// NullsFirst declares a nullable column whose NULLs come before every
	// value, whatever the column's direction.
	NullsFirst
	// NullsLast declares a nullable column whose NULLs come after every
	// value, whatever the column's direction.
	NullsLast
)

// String returns "NOT NULL", "NULLS FIRST" or "NULLS LAST".
func (n Nulls) String() string {
	switch n {
	case NotNull:
		return "NOT NULL"
	case NullsFirst:
		return "NULLS FIRST"
	case NullsLast:
		return "NULLS LAST"
	}
	return "Nulls(" + strconv.Itoa(int(n)) + ")"
}

// Column is one sort column of a Keyset.
type Column struct {
	// Name is the column as the query names it: an identifier of ASCII
	// letters, digits and underscores that does not start with a digit,
	// optionally qualified as table.column. It is written into the SQL as
	// is, unquoted, so it cannot be a reserved word.
	Name string
	// Desc sorts the column in descending order.
	Desc bool
	// Nulls declares whether the column can be NULL and where its NULLs
	// sort. Defaults to NotNull.
	Nulls Nulls
}

// Keyset is the ordered list of sort columns of a listing, for keyset
// ("seek") pagination: each page starts strictly after the last row of the
// page before, found through the index rather than by skipping rows as
// OFFSET does, so every page costs the same however deep it is and no row
// is skipped or repeated when rows are inserted or deleted between pages.
//
// The columns must identify a row: the last one must be NOT NULL and unique
// given the others, typically the primary key. Put an index on the columns
// in this order and directions (or all reversed), with the same NULL
// placement, so the database walks it.
//
// A Keyset with no columns, more than MaxColumns, a repeated or invalid
// name, an unknown Nulls value or a nullable last column is invalid, and
// every method returns an error for it.
type Keyset []Column

// MaxColumns is the most columns a Keyset may have.
const MaxColumns = 16

// Validate reports what is wrong with ks, or nil. After, Before and OrderBy
// call it; call it yourself to check a Keyset once at start-up.
func (ks Keyset) Validate() error {
	if len(ks) == 0 {
		return errors.New("pagination: empty Keyset")
	}
	if len(ks) > MaxColumns {
		return fmt.Errorf("pagination: Keyset of %d columns; at most %d", len(ks), MaxColumns)
	}
	for i, c := range ks {
		if !validName(c.Name) {
			return fmt.Errorf("pagination: Keyset column %d: %q is not an identifier or table.column", i, c.Name)
		}
		if c.Nulls > NullsLast {
			return fmt.Errorf("pagination: Keyset column %s: unknown %v", c.Name, c.Nulls)
		}
		for _, prev := range ks[:i] {
			if strings.EqualFold(prev.Name, c.Name) {
				return fmt.Errorf("pagination: Keyset column %s appears twice", c.Name)
			}
		}
	}
	if last := ks[len(ks)-1]; last.Nulls != NotNull {
		return fmt.Errorf("pagination: Keyset's last column %s is nullable; end the keyset with a unique NOT NULL column such as the primary key", last.Name)
	}
	return nil
}

// maxIdentifier is the longest identifier part accepted; Postgres truncates
// names at 63 bytes and MySQL refuses more than 64.
const maxIdentifier = 63

// validName reports whether name is an identifier or table.column.
func validName(name string) bool {
	table, column, qualified := strings.Cut(name, ".")
	if qualified {
		return validIdentifier(table) && validIdentifier(column)
	}
	return validIdentifier(name)
}

func validIdentifier(s string) bool {
	if s == "" || len(s) > maxIdentifier {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Reverse returns the keyset in the opposite order: every direction and
// NULL placement flipped. The previous page of a listing is the first page
// of the reversed listing before its first row (see Before), read backwards.
func (ks Keyset) Reverse() Keyset {
	r := make(Keyset, len(ks))
	for i, c := range ks {
		c.Desc = !c.Desc
		switch c.Nulls {
		case NullsFirst:
			c.Nulls = NullsLast
		case NullsLast:
			c.Nulls = NullsFirst
		}
		r[i] = c
	}
	return r
}

// OrderBy returns the ORDER BY list, without the keywords, that sorts rows
// in the keyset's order on d, such as "created_at DESC, id DESC".
//
// A nullable column states its NULL placement: NULLS FIRST / NULLS LAST on
// Postgres and SQLite. MySQL has no such clause, so where the placement
// differs from MySQL's own (NULLs lowest) OrderBy adds a "col IS NULL"
// term before the column. An invalid keyset or dialect is an error.
func (ks Keyset) OrderBy(d Dialect) (string, error) {
	if err := ks.Validate(); err != nil {
		return "", err
	}
	if err := d.validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	for i, c := range ks {
		if i > 0 {
			b.WriteString(", ")
		}
		nullsFirst := c.Nulls == NullsFirst
		if c.Nulls != NotNull && !d.nullsClause && nullsFirst != (d.nullsLow != c.Desc) {
			b.WriteString(c.Name)
			if nullsFirst {
				b.WriteString(" IS NULL DESC, ")
			} else {
				b.WriteString(" IS NULL, ")
			}
		}
		b.WriteString(c.Name)
		if c.Desc {
			b.WriteString(" DESC")
		} else {
			b.WriteString(" ASC")
		}
		if c.Nulls != NotNull && d.nullsClause {
			b.WriteString(" " + c.Nulls.String())
		}
	}
	return b.String(), nil
}

// After returns a WHERE condition, in parentheses, that selects the rows
// strictly after the row whose sort values are values (one per column, in
// keyset order), and its arguments. Use it with OrderBy and a LIMIT:
//
//	SELECT … WHERE <after> ORDER BY <order by> LIMIT 21
//
// The condition lets the database walk the index on the sort columns from
// the given row instead of reading and discarding the earlier rows. When
// every column is NOT NULL and shares one direction and d compares row
// values well, it is the row comparison (a, b) > (?, ?); otherwise it is
// the expanded comparison with a redundant bound on the first column, which
// becomes the index range:
//
//	a >= ? AND (a > ? OR (a = ? AND b < ?))
//
// For a nullable column a nil value (or nil pointer, or a driver.Valuer
// such as sql.NullTime that is not Valid) means the row's value is NULL,
// and the condition uses IS NULL / IS NOT NULL so that no row is dropped.
// Arguments go through d.Arg: with $n placeholders each value is bound once
// and numbered from d's offset; with ? it is repeated as often as it
// appears.
//
// A wrong number of values, nil for a NOT NULL column, an invalid keyset
// or dialect, or a failing Valuer is an error. After allocates the text and
// the arguments; it does no I/O.
func (ks Keyset) After(values []any, d Dialect) (string, []any, error) {
	if err := ks.Validate(); err != nil {
		return "", nil, err
	}
	if err := d.validate(); err != nil {
		return "", nil, err
	}
	if len(values) != len(ks) {
		return "", nil, fmt.Errorf("pagination: %d values for a Keyset of %d columns", len(values), len(ks))
	}
	b := predicate{ks: ks, d: d, values: make([]any, len(values)), numbers: make([]int, len(values))}
	for i, v := range values {
		v, err := d.Arg(v)
		if err != nil {
			return "", nil, err
		}
		if v == nil && ks[i].Nulls == NotNull {
			return "", nil, fmt.Errorf("pagination: nil value for NOT NULL column %s", ks[i].Name)
		}
		b.values[i] = v
	}
	b.sb.WriteByte('(')
	b.write()
	b.sb.WriteByte(')')
	return b.sb.String(), b.args, nil
}

// Before is After for the rows strictly before the given row: it is
// ks.Reverse().After(values, d). To fetch the page before a row, select
// with Before, order by ks.Reverse().OrderBy(d) and LIMIT, then reverse the
// rows fetched.
func (ks Keyset) Before(values []any, d Dialect) (string, []any, error) {
	return ks.Reverse().After(values, d)
}

// predicate writes the condition of After.
type predicate struct {
	ks      Keyset
	d       Dialect
	values  []any
	numbers []int // $n given to each value once it is bound, 0 before
	next    int   // the last $n given
	sb      strings.Builder
	args    []any
}

func (p *predicate) write() {
	if len(p.ks) > 1 && p.d.rowValues && p.uniform() {
		p.rowValue()
		return
	}
	if len(p.ks) > 1 && !p.afterIsFalse(0) && p.boundFirst() {
		p.sb.WriteString(" AND ")
	}
	p.after(0)
}

// uniform reports whether every column is NOT NULL and sorts one way.
func (p *predicate) uniform() bool {
	for _, c := range p.ks {
		if c.Nulls != NotNull || c.Desc != p.ks[0].Desc {
			return false
		}
	}
	return true
}

// rowValue writes (a, b) > (?, ?).
func (p *predicate) rowValue() {
	p.sb.WriteByte('(')
	for i, c := range p.ks {
		if i > 0 {
			p.sb.WriteString(", ")
		}
		p.sb.WriteString(c.Name)
	}
	p.sb.WriteString(") ")
	p.sb.WriteString(p.op(0, false))
	p.sb.WriteString(" (")
	for i := range p.ks {
		if i > 0 {
			p.sb.WriteString(", ")
		}
		p.placeholder(i)
	}
	p.sb.WriteByte(')')
}

// after writes the condition "strictly after" on columns i and later:
// after(i) = gt(i) OR (eq(i) AND after(i+1)).
func (p *predicate) after(i int) {
	if i == len(p.ks)-1 {
		p.gt(i) // the last column is NOT NULL, so gt is never false
		return
	}
	if p.afterIsFalse(i) {
		p.eq(i)
		p.sb.WriteString(" AND ")
		p.after(i + 1)
		return
	}
	p.sb.WriteByte('(')
	p.gt(i)
	p.sb.WriteString(" OR (")
	p.eq(i)
	p.sb.WriteString(" AND ")
	p.after(i + 1)
	p.sb.WriteString("))")
}

// afterIsFalse reports whether no value of column i comes after the row's:
// its value is NULL and NULLs sort last.
func (p *predicate) afterIsFalse(i int) bool {
	return p.values[i] == nil && p.ks[i].Nulls == NullsLast
}

// gt writes "column i is strictly after the row's value".
func (p *predicate) gt(i int) {
	c := p.ks[i]
	switch {
	case p.values[i] == nil: // NullsFirst: every value follows NULL
		p.sb.WriteString(c.Name + " IS NOT NULL")
	case c.Nulls == NullsLast:
		p.sb.WriteString("(" + c.Name + " " + p.op(i, false) + " ")
		p.placeholder(i)
		p.sb.WriteString(" OR " + c.Name + " IS NULL)")
	default:
		p.sb.WriteString(c.Name + " " + p.op(i, false) + " ")
		p.placeholder(i)
	}
}

// eq writes "column i equals the row's value", NULL included.
func (p *predicate) eq(i int) {
	if p.values[i] == nil {
		p.sb.WriteString(p.ks[i].Name + " IS NULL")
		return
	}
	p.sb.WriteString(p.ks[i].Name + " = ")
	p.placeholder(i)
}

// boundFirst writes "column 0 is at or after the row's value", the
// redundant condition that gives the planner an index range, and reports
// whether it wrote anything: there is no bound before a NULL sorted first.
func (p *predicate) boundFirst() bool {
	c := p.ks[0]
	switch {
	case p.values[0] == nil && c.Nulls == NullsFirst:
		return false
	case p.values[0] == nil: // NullsLast
		p.sb.WriteString(c.Name + " IS NULL")
	case c.Nulls == NullsLast:
		p.sb.WriteString("(" + c.Name + " " + p.op(0, true) + " ")
		p.placeholder(0)
		p.sb.WriteString(" OR " + c.Name + " IS NULL)")
	default:
		p.sb.WriteString(c.Name + " " + p.op(0, true) + " ")
		p.placeholder(0)
	}
	return true
}

// op returns the comparison for "after" in column i's direction.
func (p *predicate) op(i int, orEqual bool) string {
	switch {
	case p.ks[i].Desc && orEqual:
		return "<="
	case p.ks[i].Desc:
		return "<"
	case orEqual:
		return ">="
	}
	return ">"
}

// placeholder writes the placeholder of value i and binds it.
func (p *predicate) placeholder(i int) {
	if !p.d.dollar {
		p.sb.WriteByte('?')
		p.args = append(p.args, p.values[i])
		return
	}
	if p.numbers[i] == 0 {
		p.next++
		p.numbers[i] = p.next
		p.args = append(p.args, p.values[i])
	}
	p.sb.WriteByte('$')
	p.sb.WriteString(strconv.Itoa(p.d.offset + p.numbers[i]))
}
