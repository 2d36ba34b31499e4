package pagination

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fuzzCodecs returns the codecs FuzzDecode decodes with, and every cursor
// they or their keys issued for the seed corpus. Time and nonces are fixed,
// so each fuzzing process builds the same cursors.
func fuzzCodecs(tb testing.TB) (readers []*Codec, issued map[string]bool) {
	tb.Helper()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	opts := CodecOptions{TTL: time.Hour, MaxLen: 512, Now: func() time.Time { return now }}
	codec := func(opts CodecOptions, keys ...[]byte) *Codec {
		c, err := NewCodecWith(opts, keys...)
		require.NoError(tb, err)
		c.nonces = rand.NewChaCha8([32]byte{7})
		return c
	}
	reader := codec(opts, testKey, testOldKey)
	readers = []*Codec{reader, reader.Bind("users", "q=ann")}

	encOpts := opts
	encOpts.Encrypt = true
	issuers := []*Codec{
		reader, readers[1],
		codec(opts, testOldKey),
		codec(encOpts, testKey), codec(encOpts, testOldKey).Bind("users", "q=ann"),
	}
	values := []any{
		sampleCursor,
		testCursor{ID: -1},
		map[string]any{"id": 1, "t": "not a time"},
		[]int{1, 2, 3},
		"x",
		nil,
	}
	issued = map[string]bool{}
	for _, c := range issuers {
		for _, v := range values {
			s, err := c.Encode(v)
			require.NoError(tb, err)
			issued[s] = true
		}
	}
	return readers, issued
}

// FuzzDecode feeds random strings and mutations of genuine cursors to
// Decode. It must never panic, must refuse with ErrInvalidCursor whatever
// it does not accept, and may accept only cursors that Encode produced
// with one of its keys.
func FuzzDecode(f *testing.F) {
	readers, issued := fuzzCodecs(f)
	for s := range issued {
		f.Add(s)
	}
	// A cursor signed by a key the readers do not have.
	stranger, err := NewCodec(testKey3)
	require.NoError(f, err)
	s, err := stranger.Encode(sampleCursor)
	require.NoError(f, err)
	for _, seed := range []string{s, "", "A", "AQ", "AQAA", "____", "AQEB" + strings.Repeat("A", 40), strings.Repeat("A", 600), "eyJpZCI6MX0", "a+b/c==", "\x00\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cursor string) {
		for _, c := range readers {
			targets := []any{new(testCursor), new(any), new(map[string]any), new([]int), new(string)}
			for _, v := range targets {
				err := c.Decode(cursor, v)
				if err == nil {
					require.True(t, issued[cursor], "accepted a cursor no Encode produced: %q", cursor)
					continue
				}
				require.ErrorIs(t, err, ErrInvalidCursor)
			}
		}
	})
}

// plainLimit is what ParseLimit accepts besides "": a number from 1 in
// plain decimal digits, without sign or leading zero, at most 10 digits.
var plainLimit = regexp.MustCompile(`^[1-9][0-9]{0,9}$`)

// FuzzParseLimit checks that ParseLimit, which reads a query parameter,
// never panics, accepts exactly "" and the texts plainLimit matches, giving
// def for "" and the number, clamped to max, otherwise, and refuses
// everything else with ErrInvalidLimit.
func FuzzParseLimit(f *testing.F) {
	for _, s := range []string{"", "0", "1", "20", "100", "101", "-1", "+5", "007", "00", "-0", "1e3", "0x10", " 5", "5 ", "١٢", "99999999999999999999", "9223372036854775808", "9999999999"} {
		f.Add(s, 20, 100)
	}
	f.Add("5", 0, 100)
	f.Add("5", 50, 10)
	f.Fuzz(func(t *testing.T, s string, def, max int) {
		n, err := ParseLimit(s, def, max)
		if def < 1 || max < def {
			require.Error(t, err)
			require.NotErrorIs(t, err, ErrInvalidLimit)
			return
		}
		if s != "" && !plainLimit.MatchString(s) {
			require.ErrorIs(t, err, ErrInvalidLimit, "accepted %q", s)
			require.Zero(t, n)
			return
		}
		require.NoError(t, err, "refused %q", s)
		if s == "" {
			require.Equal(t, def, n)
			return
		}
		given, convErr := strconv.ParseInt(s, 10, 64)
		require.NoError(t, convErr)
		require.Equal(t, int(min(given, int64(max))), n)
	})
}
