package pagination

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewPage(t *testing.T) {
	t.Parallel()
	cursorOf := func(last int) (string, error) { return "after-" + strconv.Itoa(last), nil }
	tests := []struct {
		name     string
		rows     []int
		limit    int
		want     Page[int]
		wantJSON string
	}{
		{"no rows is an empty last page", nil, 3, Page[int]{Items: []int{}}, `{"items":[],"has_more":false}`},
		{"fewer rows than the limit is the last page", []int{1, 2}, 3, Page[int]{Items: []int{1, 2}}, `{"items":[1,2],"has_more":false}`},
		{"exactly limit rows is the last page", []int{1, 2, 3}, 3, Page[int]{Items: []int{1, 2, 3}}, `{"items":[1,2,3],"has_more":false}`},
		{"limit+1 rows trims the extra row and points after the last kept", []int{1, 2, 3, 4}, 3,
			Page[int]{Items: []int{1, 2, 3}, NextCursor: "after-3", HasMore: true}, `{"items":[1,2,3],"next_cursor":"after-3","has_more":true}`},
		{"a limit of one", []int{7, 8}, 1, Page[int]{Items: []int{7}, NextCursor: "after-7", HasMore: true}, `{"items":[7],"next_cursor":"after-7","has_more":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewPage(tt.rows, tt.limit, cursorOf)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			out, err := json.Marshal(got)
			require.NoError(t, err)
			require.JSONEq(t, tt.wantJSON, string(out))
		})
	}
	t.Run("appending to the items does not overwrite the trimmed row", func(t *testing.T) {
		rows := []int{1, 2, 3}
		got, err := NewPage(rows, 2, cursorOf)
		require.NoError(t, err)
		_ = append(got.Items, 99)
		require.Equal(t, []int{1, 2, 3}, rows)
	})
	t.Run("cursorOf is not called on the last page", func(t *testing.T) {
		got, err := NewPage([]int{1}, 2, func(int) (string, error) { panic("called") })
		require.NoError(t, err)
		require.False(t, got.HasMore)
	})
}

func TestNewPageRejects(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name     string
		rows     []int
		limit    int
		cursorOf func(int) (string, error)
		want     string
	}{
		{"a zero limit", []int{1}, 0, nil, "limit 0 is below 1"},
		{"a negative limit", nil, -1, nil, "limit -1 is below 1"},
		{"more than limit+1 rows", []int{1, 2, 3, 4}, 2, nil, "4 rows for a limit of 2"},
		{"a nil cursorOf when a next page exists", []int{1, 2}, 1, nil, "nil cursorOf"},
		{"an error from cursorOf", []int{1, 2}, 1, func(int) (string, error) { return "", boom }, "cursor of last item: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is an error", func(t *testing.T) {
			_, err := NewPage(tt.rows, tt.limit, tt.cursorOf)
			require.ErrorContains(t, err, tt.want)
		})
	}
	t.Run("the error of cursorOf is wrapped", func(t *testing.T) {
		_, err := NewPage([]int{1, 2}, 1, func(int) (string, error) { return "", boom })
		require.ErrorIs(t, err, boom)
	})
}

func TestParseLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		want int
	}{
		{"", 20},
		{"1", 1},
		{"20", 20},
		{"100", 100},
		{"101", 100},
		{"9999999999", 100},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.s)+" gives "+strconv.Itoa(tt.want), func(t *testing.T) {
			got, err := ParseLimit(tt.s, 20, 100)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	bad := []struct {
		s, want string
	}{
		{"0", "must be at least 1"},
		{"-5", "has a sign"},
		{"+5", "has a sign"},
		{"-0", "has a sign"},
		{"007", "has a leading zero"},
		{"05", "has a leading zero"},
		{"00", "has a leading zero"},
		{"abc", "is not a whole number"},
		{"1.5", "is not a whole number"},
		{" 5", "is not a whole number"},
		{"1e3", "is not a whole number"},
		{"0x10", "is not a whole number"},
		{"99999999999", "too long"},
		{"99999999999999999999999999", "too long"},
	}
	for _, tt := range bad {
		t.Run(strconv.Quote(tt.s)+" is an error", func(t *testing.T) {
			got, err := ParseLimit(tt.s, 20, 100)
			require.ErrorIs(t, err, ErrInvalidLimit)
			require.ErrorContains(t, err, tt.want)
			require.Zero(t, got)
		})
	}
	for _, tt := range []struct{ def, max int }{{0, 100}, {-1, 100}, {50, 10}} {
		t.Run("default "+strconv.Itoa(tt.def)+" and max "+strconv.Itoa(tt.max)+" are an error", func(t *testing.T) {
			_, err := ParseLimit("", tt.def, tt.max)
			require.ErrorContains(t, err, "must satisfy 1 <= default <= max")
			require.NotErrorIs(t, err, ErrInvalidLimit, "the caller's constants are not the request's fault")
		})
	}
}
