package pagination

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	testKey    = []byte("k1-0123456789abcdef0123456789abcdef")
	testOldKey = []byte("k0-fedcba9876543210fedcba9876543210")
	testKey3   = []byte("k3-an-unrelated-key-of-enough-bytes!")
)

type testCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        int64     `json:"id"`
}

var sampleCursor = testCursor{CreatedAt: time.Date(2026, 11, 29, 20, 33, 38, 123456789, time.UTC), ID: 42}

func newTestCodec(t *testing.T, opts CodecOptions, keys ...[]byte) *Codec {
	t.Helper()
	if len(keys) == 0 {
		keys = [][]byte{testKey}
	}
	c, err := NewCodecWith(opts, keys...)
	require.NoError(t, err)
	return c
}

// rawOf returns the bytes a cursor encodes.
func rawOf(t *testing.T, cursor string) []byte {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	require.NoError(t, err)
	return raw
}

// resign replaces the tag of raw with a valid one under key, as an Encode
// with that key would have made it, and returns the cursor.
func resign(key, raw []byte) string {
	signed := bytes.Clone(raw[:len(raw)-tagSize])
	m := hmac.New(sha256.New, derive(key, macLabel))
	m.Write(signed)
	return base64.RawURLEncoding.EncodeToString(append(signed, m.Sum(nil)[:tagSize]...))
}

func TestNewCodecRejectsBadKeysAndOptions(t *testing.T) {
	t.Parallel()
	many := make([][]byte, MaxKeys+1)
	for i := range many {
		many[i] = testKey
	}
	tests := []struct {
		name string
		opts CodecOptions
		keys [][]byte
		want string
	}{
		{"no key", CodecOptions{}, nil, "at least one key"},
		{"a key shorter than 32 bytes", CodecOptions{}, [][]byte{testKey, []byte("short")}, "key 1 is 5 bytes"},
		{"an empty key", CodecOptions{}, [][]byte{{}}, "key 0 is 0 bytes"},
		{"more keys than MaxKeys", CodecOptions{}, many, "at most 16"},
		{"a negative TTL", CodecOptions{TTL: -time.Second}, [][]byte{testKey}, "negative cursor TTL"},
		{"a MaxLen below 64", CodecOptions{MaxLen: 63}, [][]byte{testKey}, "MaxLen 63"},
		{"a negative MaxLen", CodecOptions{MaxLen: -1}, [][]byte{testKey}, "MaxLen -1"},
		{"a MaxLen above 64 KiB", CodecOptions{MaxLen: maxMaxLen + 1}, [][]byte{testKey}, "MaxLen 65537"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is an error", func(t *testing.T) {
			c, err := NewCodecWith(tt.opts, tt.keys...)
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, c)
		})
	}
	t.Run("exactly 32 bytes is enough", func(t *testing.T) {
		_, err := NewCodec(make([]byte, 32))
		require.NoError(t, err)
	})
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	type payload struct {
		Name  string   `json:"name"`
		Score *float64 `json:"score"`
		Tags  []string `json:"tags"`
	}
	score := 2.5
	tests := []struct {
		name string
		opts CodecOptions
		bind []string
	}{
		{"plain", CodecOptions{}, nil},
		{"bound to a query", CodecOptions{}, []string{"users", "q=ann"}},
		{"encrypted", CodecOptions{Encrypt: true}, nil},
		{"bound and encrypted, with a TTL", CodecOptions{Encrypt: true, TTL: time.Hour}, []string{"tasks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" decodes to the value encoded", func(t *testing.T) {
			c := newTestCodec(t, tt.opts)
			if tt.bind != nil {
				c = c.Bind(tt.bind...)
			}
			s, err := c.Encode(sampleCursor)
			require.NoError(t, err)
			require.NotContains(t, s, "=")
			var got testCursor
			require.NoError(t, c.Decode(s, &got))
			require.True(t, sampleCursor.CreatedAt.Equal(got.CreatedAt))
			require.Equal(t, sampleCursor.ID, got.ID)

			in := payload{Name: "a&b<c> ünï", Score: &score, Tags: []string{"x", ""}}
			s, err = c.Encode(in)
			require.NoError(t, err)
			var out payload
			require.NoError(t, c.Decode(s, &out))
			require.Equal(t, in, out)
		})
	}
}

func TestCodecCursorIsCompactAndURLSafe(t *testing.T) {
	t.Parallel()
	c := newTestCodec(t, CodecOptions{})
	s, err := c.Encode(sampleCursor)
	require.NoError(t, err)
	for _, r := range s {
		require.True(t, r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9', "rune %q", r)
	}
	// 2 header bytes, a 6-byte time, 16 of tag and the JSON.
	require.Less(t, len(s), 110, s)
}

func TestCodecEncryptionHidesTheValue(t *testing.T) {
	t.Parallel()
	secret := struct {
		Email string `json:"email"`
	}{"ann@example.com"}
	t.Run("a signed cursor carries the value in clear", func(t *testing.T) {
		s, err := newTestCodec(t, CodecOptions{}).Encode(secret)
		require.NoError(t, err)
		require.Contains(t, string(rawOf(t, s)), "ann@example.com")
	})
	t.Run("an encrypted cursor does not", func(t *testing.T) {
		c := newTestCodec(t, CodecOptions{Encrypt: true})
		s1, err := c.Encode(secret)
		require.NoError(t, err)
		s2, err := c.Encode(secret)
		require.NoError(t, err)
		require.NotContains(t, string(rawOf(t, s1)), "ann@")
		require.NotEqual(t, s1, s2, "each cursor has its own nonce")
	})
	t.Run("a codec without Encrypt still reads encrypted cursors of its keys, and the reverse", func(t *testing.T) {
		enc := newTestCodec(t, CodecOptions{Encrypt: true})
		plain := newTestCodec(t, CodecOptions{})
		for _, pair := range [][2]*Codec{{enc, plain}, {plain, enc}} {
			s, err := pair[0].Encode(sampleCursor)
			require.NoError(t, err)
			var got testCursor
			require.NoError(t, pair[1].Decode(s, &got))
			require.Equal(t, sampleCursor.ID, got.ID)
		}
	})
}

func TestCodecKeyRotation(t *testing.T) {
	t.Parallel()
	old := newTestCodec(t, CodecOptions{}, testOldKey)
	rotated := newTestCodec(t, CodecOptions{}, testKey, testOldKey)
	newOnly := newTestCodec(t, CodecOptions{}, testKey)

	issuedBefore, err := old.Encode(sampleCursor)
	require.NoError(t, err)
	issuedAfter, err := rotated.Encode(sampleCursor)
	require.NoError(t, err)

	var got testCursor
	t.Run("a cursor signed with the old key decodes while the old key is listed", func(t *testing.T) {
		require.NoError(t, rotated.Decode(issuedBefore, &got))
		require.Equal(t, sampleCursor.ID, got.ID)
	})
	t.Run("new cursors are signed with the first key", func(t *testing.T) {
		require.NoError(t, newOnly.Decode(issuedAfter, &got))
		require.ErrorIs(t, old.Decode(issuedAfter, &got), ErrInvalidCursor)
	})
	t.Run("a cursor signed with a retired key is refused", func(t *testing.T) {
		err := newOnly.Decode(issuedBefore, &got)
		require.ErrorIs(t, err, ErrInvalidCursor)
		require.ErrorContains(t, err, "bad signature")
	})
	t.Run("encrypted cursors rotate the same way", func(t *testing.T) {
		oldEnc := newTestCodec(t, CodecOptions{Encrypt: true}, testOldKey)
		rotatedEnc := newTestCodec(t, CodecOptions{Encrypt: true}, testKey, testOldKey)
		s, err := oldEnc.Encode(sampleCursor)
		require.NoError(t, err)
		require.NoError(t, rotatedEnc.Decode(s, &got))
		require.Equal(t, sampleCursor.ID, got.ID)
	})
}

func TestCodecBindRefusesCursorsOfAnotherQuery(t *testing.T) {
	t.Parallel()
	c := newTestCodec(t, CodecOptions{})
	encode := func(c *Codec) string {
		s, err := c.Encode(sampleCursor)
		require.NoError(t, err)
		return s
	}
	var got testCursor
	tests := []struct {
		name       string
		issuer     *Codec
		reader     *Codec
		wantReason string
	}{
		{"another filter", c.Bind("users", "q=ann"), c.Bind("users", "q=bob"), "issued for a different query"},
		{"the same text split differently", c.Bind("ab", "c"), c.Bind("a", "bc"), "issued for a different query"},
		{"an unbound listing", c.Bind("users"), c, "bound to a query, but this listing has none"},
		{"a bound listing given an unbound cursor", c, c.Bind("users"), "not bound to a query"},
		{"a bound cursor of another key", newTestCodec(t, CodecOptions{}, testKey3).Bind("users"), c.Bind("users"), "bad signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			err := tt.reader.Decode(encode(tt.issuer), &got)
			require.ErrorIs(t, err, ErrInvalidCursor)
			require.ErrorContains(t, err, tt.wantReason)
		})
	}
	t.Run("the same query decodes", func(t *testing.T) {
		require.NoError(t, c.Bind("users", "q=ann").Decode(encode(c.Bind("users", "q=ann")), &got))
	})
	t.Run("binding leaves the original codec unbound", func(t *testing.T) {
		_ = c.Bind("users")
		require.NoError(t, c.Decode(encode(c), &got))
	})
}

func TestCodecDecodeRejects(t *testing.T) {
	t.Parallel()
	c := newTestCodec(t, CodecOptions{MaxLen: 200})
	valid, err := c.Encode(sampleCursor)
	require.NoError(t, err)
	raw := rawOf(t, valid)

	flip := func(i int) string {
		r := bytes.Clone(raw)
		r[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(r)
	}
	wrongVersion := bytes.Clone(raw)
	wrongVersion[0] = formatVersion + 1
	unknownFlag := bytes.Clone(raw)
	unknownFlag[1] |= 0x80
	// An authentic cursor whose JSON is not what the target expects.
	encodeAs := func(v any) string {
		s, err := c.Encode(v)
		require.NoError(t, err)
		return s
	}
	// A last character whose unused low bits are set decodes to the same
	// bytes under a lenient decoder; a cursor has one spelling only.
	require.NotZero(t, len(raw)%3, "the last character of this cursor must carry padding bits")
	last := valid[len(valid)-1]
	nonCanonical := valid[:len(valid)-1] + string(base64URLAlphabet[strings.IndexByte(base64URLAlphabet, last)|1])
	if nonCanonical == valid {
		nonCanonical = valid[:len(valid)-1] + string(base64URLAlphabet[strings.IndexByte(base64URLAlphabet, last)|2])
	}

	tests := []struct {
		name   string
		cursor string
		reason string
	}{
		{"an empty cursor", "", "empty"},
		{"a cursor over MaxLen", strings.Repeat("A", 201), "longer than the maximum length"},
		{"a huge cursor", strings.Repeat("%", 10<<20), "longer than the maximum length"},
		{"standard base64 characters", strings.ReplaceAll(strings.ReplaceAll(valid, "-", "+"), "_", "/") + "+", "not URL-safe base64"},
		{"padding", valid + "==", "not URL-safe base64"},
		{"a line break", valid[:10] + "\n" + valid[10:], "not URL-safe base64"},
		{"a space", valid[:10] + " " + valid[10:], "not URL-safe base64"},
		{"percent-encoding", valid[:10] + "%2D" + valid[10:], "not URL-safe base64"},
		{"an impossible length", valid[:len(valid)-len(valid)%4] + "A", "not URL-safe base64"},
		{"non-zero trailing bits", nonCanonical, "not URL-safe base64"},
		{"a few bytes", "AQA", "truncated"},
		{"a cursor one byte short of the minimum", base64.RawURLEncoding.EncodeToString(raw[:minRawSize-1]), "truncated"},
		{"the tag cut off", base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1]), "bad signature"},
		{"the value cut off", base64.RawURLEncoding.EncodeToString(append(bytes.Clone(raw[:10]), raw[len(raw)-tagSize:]...)), "bad signature"},
		{"another version, even if signed", resign(testKey, wrongVersion), "unsupported format version"},
		{"an unknown flag, even if signed", resign(testKey, unknownFlag), "malformed"},
		{"an altered value", flip(len(raw) - tagSize - 3), "bad signature"},
		{"an altered issue time", flip(3), "bad signature"},
		{"an altered tag", flip(len(raw) - 1), "bad signature"},
		{"a cursor signed by an unknown key", resign(testKey3, raw), "bad signature"},
		{"a value of another type", encodeAs(struct {
			T string `json:"t"`
			N string `json:"id"`
		}{"x", "y"}), "does not fit *pagination.testCursor"},
		{"a value with an unknown field", encodeAs(struct {
			ID    int64 `json:"id"`
			Admin bool  `json:"admin"`
		}{1, true}), "does not fit"},
		{"a JSON array for a struct", encodeAs([]int{1, 2}), "does not fit"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			var got testCursor
			err := c.Decode(tt.cursor, &got)
			require.ErrorIs(t, err, ErrInvalidCursor)
			require.ErrorContains(t, err, tt.reason)
			require.False(t, errors.Is(err, ErrCursorExpired))
		})
	}

	t.Run("a type mismatch unwraps to the JSON error", func(t *testing.T) {
		var got struct {
			ID string `json:"id"`
		}
		err := c.Decode(valid, &got)
		require.ErrorIs(t, err, ErrInvalidCursor)
		require.NotNil(t, errors.Unwrap(err))
		// The decoder recovers: the next cursor decodes.
		var ok testCursor
		require.NoError(t, c.Decode(valid, &ok))
	})
	t.Run("every single-bit change is refused", func(t *testing.T) {
		for i := range raw {
			for bit := range 8 {
				r := bytes.Clone(raw)
				r[i] ^= 1 << bit
				var got testCursor
				require.ErrorIs(t, c.Decode(base64.RawURLEncoding.EncodeToString(r), &got), ErrInvalidCursor, "byte %d bit %d", i, bit)
			}
		}
	})
	t.Run("every truncation is refused", func(t *testing.T) {
		for n := range len(valid) {
			var got testCursor
			require.ErrorIs(t, c.Decode(valid[:n], &got), ErrInvalidCursor, "length %d", n)
		}
	})
	t.Run("a nil or non-pointer target is a caller error, not an invalid cursor", func(t *testing.T) {
		var nilPtr *testCursor
		for _, v := range []any{nil, testCursor{}, nilPtr} {
			err := c.Decode(valid, v)
			require.ErrorContains(t, err, "non-nil pointer")
			require.NotErrorIs(t, err, ErrInvalidCursor)
		}
	})
}

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestCodecEncodeErrors(t *testing.T) {
	t.Parallel()
	t.Run("a nil or zero Codec is an error, not a panic", func(t *testing.T) {
		var nilCodec *Codec
		for _, c := range []*Codec{nilCodec, {}, nilCodec.Bind("x"), (&Codec{}).Bind("x")} {
			_, err := c.Encode(sampleCursor)
			require.ErrorContains(t, err, "Codec not made by NewCodec")
			var got testCursor
			err = c.Decode("AAAA", &got)
			require.ErrorContains(t, err, "Codec not made by NewCodec")
			require.NotErrorIs(t, err, ErrInvalidCursor)
		}
	})
	t.Run("a value JSON cannot encode is an error", func(t *testing.T) {
		_, err := newTestCodec(t, CodecOptions{}).Encode(make(chan int))
		require.ErrorContains(t, err, "encode cursor value chan int")
		require.NotErrorIs(t, err, ErrInvalidCursor)
	})
	t.Run("a cursor over MaxLen is not issued", func(t *testing.T) {
		c := newTestCodec(t, CodecOptions{MaxLen: 64})
		_, err := c.Encode(strings.Repeat("x", 40))
		require.ErrorContains(t, err, "exceeds the codec's MaxLen of 64")
		s, err := c.Encode("x")
		require.NoError(t, err)
		require.LessOrEqual(t, len(s), 64)
	})
	t.Run("a cursor of exactly MaxLen is issued and decodes", func(t *testing.T) {
		c := newTestCodec(t, CodecOptions{MaxLen: 64})
		for n := 1; n < 40; n++ {
			s, err := c.Encode(strings.Repeat("x", n))
			if err != nil {
				continue
			}
			var got string
			require.NoError(t, c.Decode(s, &got))
			require.Equal(t, strings.Repeat("x", n), got)
		}
	})
}

func TestCodecExpiry(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		c := newTestCodec(t, CodecOptions{TTL: time.Minute})
		s, err := c.Encode(sampleCursor)
		require.NoError(t, err)
		var got testCursor

		time.Sleep(time.Minute)
		require.NoError(t, c.Decode(s, &got), "a cursor exactly TTL old is still valid")

		time.Sleep(time.Millisecond)
		err = c.Decode(s, &got)
		require.ErrorIs(t, err, ErrCursorExpired)
		require.ErrorIs(t, err, ErrInvalidCursor)
		require.EqualError(t, err, "pagination: invalid cursor: expired")

		fresh, err := c.Encode(sampleCursor)
		require.NoError(t, err)
		require.NoError(t, c.Decode(fresh, &got), "a cursor issued now is valid")
	})
}

func TestCodecTTLAppliesToCursorsIssuedWithoutOne(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s, err := newTestCodec(t, CodecOptions{}).Encode(sampleCursor)
		require.NoError(t, err)
		time.Sleep(2 * time.Hour)
		var got testCursor
		require.NoError(t, newTestCodec(t, CodecOptions{}).Decode(s, &got), "no TTL: never expires")
		require.ErrorIs(t, newTestCodec(t, CodecOptions{TTL: time.Hour}).Decode(s, &got), ErrCursorExpired)
	})
}

func TestCodecNowIsInjectable(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newTestCodec(t, CodecOptions{TTL: 10 * time.Second, Now: func() time.Time { return now }})
	s, err := c.Encode(sampleCursor)
	require.NoError(t, err)
	var got testCursor
	now = now.Add(10 * time.Second)
	require.NoError(t, c.Decode(s, &got))
	now = now.Add(time.Millisecond)
	require.ErrorIs(t, c.Decode(s, &got), ErrCursorExpired)
}

func TestCodecIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	c := newTestCodec(t, CodecOptions{Encrypt: true}, testKey, testOldKey)
	old := newTestCodec(t, CodecOptions{}, testOldKey)
	done := make(chan error, 8)
	for g := range 8 {
		go func() {
			for i := range 200 {
				in := testCursor{CreatedAt: sampleCursor.CreatedAt.Add(time.Duration(i)), ID: int64(g*1000 + i)}
				enc := c
				if i%3 == 0 {
					enc = old
				}
				s, err := enc.Encode(in)
				if err == nil {
					var out testCursor
					err = c.Decode(s, &out)
					if err == nil && (out.ID != in.ID || !out.CreatedAt.Equal(in.CreatedAt)) {
						err = errors.New("decoded another cursor's value")
					}
				}
				if err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		require.NoError(t, <-done)
	}
}
