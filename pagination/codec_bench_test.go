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

var benchValue = benchCursor{CreatedAt: time.Date(2026, 11, 29, 20, 33, 38, 123456000, time.UTC), ID: 1234567}

// benchCodecs are the configurations measured: the default, and the most
// expensive one (bound, encrypted, with a TTL).
func benchCodecs(b *testing.B) []struct {
	name string
	c    *Codec
} {
	b.Helper()
	plain, err := NewCodec(testKey)
	if err != nil {
		b.Fatal(err)
	}
	sealed, err := NewCodecWith(CodecOptions{Encrypt: true, TTL: time.Hour}, testKey)
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		c    *Codec
	}{{"signed", plain}, {"bound+encrypted", sealed.Bind("tasks", "status=failed")}}
}

// BenchmarkEncode measures Encode of a two-field cursor (time.Time and
// int64) on one goroutine, the latency a request pays, and on all
// goroutines at once. The allocations include boxing the value into an any.
func BenchmarkEncode(b *testing.B) {
	for _, bc := range benchCodecs(b) {
		b.Run(bc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.c.Encode(benchValue); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bc.c.Encode(benchValue); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkDecode measures Decode of the cursor BenchmarkEncode makes, on
// one goroutine and on all goroutines at once.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range benchCodecs(b) {
		s, err := bc.c.Encode(benchValue)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			var v benchCursor
			for b.Loop() {
				if err := bc.c.Decode(s, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var v benchCursor
				for pb.Next() {
					if err := bc.c.Decode(s, &v); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
