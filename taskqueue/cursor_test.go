package taskqueue

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCursorRoundTrips(t *testing.T) {
	for _, p := range []Position{
		{CreatedAt: time.Unix(0, 0), ID: newID()},
		{CreatedAt: time.Date(2026, 11, 29, 20, 0, 0, 123456789, time.UTC), ID: newID()},
		{CreatedAt: time.Unix(0, -1), ID: strings.Repeat("0", idLen)},
		{CreatedAt: time.Unix(0, 1<<62), ID: "7" + strings.Repeat("z", idLen-1)},
	} {
		s := encodeCursor(p)
		got, err := decodeCursor(s)
		require.NoError(t, err)
		require.True(t, p.CreatedAt.Equal(got.CreatedAt))
		require.Equal(t, p.ID, got.ID)
	}
}

func TestCursorDecodingIsStrict(t *testing.T) {
	good := encodeCursor(Position{CreatedAt: time.Unix(1, 2), ID: newID()})
	raw, err := base64.RawURLEncoding.DecodeString(good)
	require.NoError(t, err)
	mutate := func(f func(b []byte)) string {
		b := append([]byte(nil), raw...)
		f(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	for _, tc := range []struct{ name, cursor string }{
		{"empty", ""},
		{"short", good[:len(good)-1]},
		{"long", good + "A"},
		{"padding", good + "="},
		{"standard alphabet", strings.NewReplacer("-", "+", "_", "/").Replace(good) + strings.Repeat("+", 0)},
		{"unknown version", mutate(func(b []byte) { b[0] = 2 })},
		{"id with a letter base32 leaves out", mutate(func(b []byte) { b[12] = 'u' })},
		{"id in upper case", mutate(func(b []byte) { b[12] = 'A' })},
		{"id out of range", mutate(func(b []byte) { b[9] = '8' })},
		{"id with a NUL", mutate(func(b []byte) { b[20] = 0 })},
		{"non-canonical trailing bits", good[:len(good)-1] + string(flipLowBits(good[len(good)-1]))},
		{"spaces", " " + good[1:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cursor == good {
				t.Skip("mutation left the cursor unchanged")
			}
			_, err := decodeCursor(tc.cursor)
			require.ErrorIs(t, err, ErrInvalidCursor)
		})
	}
}

// flipLowBits returns a base64url digit with the same top bits as c but
// non-zero low bits, which a canonical encoding of 35 bytes never has.
func flipLowBits(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i|1]
}

func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor(Position{CreatedAt: time.Unix(5, 6), ID: newID()}))
	f.Add("")
	f.Add("AQ")
	f.Add(strings.Repeat("A", 47))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := decodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCursor) {
				t.Fatalf("error %v does not wrap ErrInvalidCursor", err)
			}
			return
		}
		if got := encodeCursor(p); got != s {
			t.Fatalf("cursor %q decoded but re-encodes as %q", s, got)
		}
	})
}

func TestNewIDShapeAndOrder(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		id := newID()
		require.True(t, validID(id), id)
		require.False(t, seen[id], "duplicate id %s", id)
		seen[id] = true
		if i%100 == 0 {
			time.Sleep(2 * time.Millisecond)
			next := newID()
			require.Greater(t, next, prev, "ids sort by creation time across milliseconds")
		}
		prev = id
	}
	for _, bad := range []string{"", "x", strings.Repeat("0", idLen+1), "8" + strings.Repeat("0", idLen-1), strings.Repeat("I", idLen)} {
		require.False(t, validID(bad), bad)
	}
}
