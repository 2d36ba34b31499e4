package pagination

import (
	"errors"
	"fmt"
)

// Page is one page of a cursor-paginated listing, ready to be written as
// JSON. NextCursor is empty, and HasMore false, on the last page.
type Page[T any] struct {
	// Items are the rows of this page, in the listing's order.
	Items []T `json:"items"`
	// NextCursor, when not empty, fetches the page after this one.
	NextCursor string `json:"next_cursor,omitempty"`
	// HasMore reports whether rows follow this page.
	HasMore bool `json:"has_more"`
}

// NewPage builds a Page from rows fetched with LIMIT limit+1: the extra row,
// if present, only proves that more rows follow and is trimmed off. cursorOf
// is called once, with the last item kept, to make NextCursor; it is not
// called on the last page.
//
// Items is never nil, so an empty page encodes as "items": [] rather than
// null. A limit below 1, more than limit+1 rows, or a nil cursorOf when a
// next page exists is an error, as is an error from cursorOf.
func NewPage[T any](rows []T, limit int, cursorOf func(last T) (string, error)) (Page[T], error) {
	if limit < 1 {
		return Page[T]{}, fmt.Errorf("pagination: limit %d is below 1", limit)
	}
	if len(rows) > limit+1 {
		return Page[T]{}, fmt.Errorf("pagination: %d rows for a limit of %d; fetch limit+1 rows", len(rows), limit)
	}
	if rows == nil {
		rows = []T{}
	}
	if len(rows) <= limit {
		return Page[T]{Items: rows}, nil
	}
	if cursorOf == nil {
		return Page[T]{}, errors.New("pagination: nil cursorOf")
	}
	items := rows[:limit:limit]
	next, err := cursorOf(items[limit-1])
	if err != nil {
		return Page[T]{}, fmt.Errorf("pagination: cursor of last item: %w", err)
	}
	return Page[T]{Items: items, NextCursor: next, HasMore: true}, nil
}
