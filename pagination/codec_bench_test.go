package pagination

import (
	"testing"
	"time"
)

// benchCursor is the typical keyset cursor: a timestamp and a tie-breaking id.
type benchCursor struct {
	CreatedAt time.Time `json:"t"`
	ID        int64     `json:"id"`
}

func benchCodec(b *testing.B) *Codec {
	b.Helper()
	c, err := NewCodec([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkEncode(b *testing.B) {
	c := benchCodec(b)
	v := benchCursor{CreatedAt: time.Date(2026, 11, 29, 20, 33, 38, 123456000, time.UTC), ID: 1234567}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Encode(v); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	c := benchCodec(b)
	s, err := c.Encode(benchCursor{CreatedAt: time.Date(2026, 11, 29, 20, 33, 38, 123456000, time.UTC), ID: 1234567})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var v benchCursor
		for pb.Next() {
			if err := c.Decode(s, &v); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
