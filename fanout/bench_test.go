package fanout_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/asynckit/asynckit/fanout"
)

// The workload of the comparison: n items, limit workers, and
// trivial work (an atomic add), so that what is measured is the fan-out's
// own cost per item. ns/item is ns/op divided by n.
var benchSizes = []struct{ n, limit int }{{10_000, 8}}

func benchName(n, limit int) string { return fmt.Sprintf("n=%d/limit=%d", n, limit) }

func reportPerItem(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/item")
}

func BenchmarkMap(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n, s.limit), func(b *testing.B) {
			var sink atomic.Int64
			items := make([]int, s.n)
			fn := func(_ context.Context, i int) (int, error) { return int(sink.Add(1)), nil }
			opts := []fanout.Option{fanout.Limit(s.limit)}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := fanout.Map(ctx, items, fn, opts...); err != nil {
					b.Fatal(err)
				}
			}
			reportPerItem(b, s.n)
		})
	}
}

func BenchmarkSettle(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n, s.limit), func(b *testing.B) {
			var sink atomic.Int64
			items := make([]int, s.n)
			fn := func(_ context.Context, i int) (int, error) { return int(sink.Add(1)), nil }
			opts := []fanout.Option{fanout.Limit(s.limit)}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				fanout.Settle(ctx, items, fn, opts...)
			}
			reportPerItem(b, s.n)
		})
	}
}

// BenchmarkErrgroupBaseline is the plain way to write the same Map with
// golang.org/x/sync/errgroup and SetLimit: one goroutine and one closure
// per item, results written into a preallocated slice.
func BenchmarkErrgroupBaseline(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n, s.limit), func(b *testing.B) {
			var sink atomic.Int64
			items := make([]int, s.n)
			fn := func(_ context.Context, i int) (int, error) { return int(sink.Add(1)), nil }
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				out := make([]int, len(items))
				g, gctx := errgroup.WithContext(ctx)
				g.SetLimit(s.limit)
				for i, it := range items {
					g.Go(func() error {
						v, err := fn(gctx, it)
						out[i] = v
						return err
					})
				}
				if err := g.Wait(); err != nil {
					b.Fatal(err)
				}
			}
			reportPerItem(b, s.n)
		})
	}
}

// BenchmarkBareWorkers is the shape of conc's iter.Map: limit goroutines
// pulling the next index from an atomic counter one at a time and calling
// fn, with no context, no error handling and no panic recovery. Map keeps
// those guarantees and still runs below it on fast calls, because its
// workers claim such calls in runs of indices: one contended atomic add per
// run instead of per item, and neighbouring results written by one core.
func BenchmarkBareWorkers(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n, s.limit), func(b *testing.B) {
			var sink atomic.Int64
			items := make([]int, s.n)
			fn := func(_ context.Context, i int) (int, error) { return int(sink.Add(1)), nil }
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				out := make([]int, len(items))
				var next atomic.Int64
				var wg sync.WaitGroup
				for range s.limit {
					wg.Go(func() {
						for i := int(next.Add(1) - 1); i < len(items); i = int(next.Add(1) - 1) {
							out[i], _ = fn(ctx, items[i])
						}
					})
				}
				wg.Wait()
			}
			reportPerItem(b, s.n)
		})
	}
}

func BenchmarkStream(b *testing.B) {
	for _, s := range benchSizes {
		b.Run(benchName(s.n, s.limit), func(b *testing.B) {
			var sink atomic.Int64
			items := make([]int, s.n)
			fn := func(_ context.Context, i int) (int, error) { return int(sink.Add(1)), nil }
			opts := []fanout.Option{fanout.Limit(s.limit)}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				for _, r := range fanout.Stream(ctx, items, fn, opts...) {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			reportPerItem(b, s.n)
		})
	}
}

// BenchmarkDo and BenchmarkFirst measure the fixed cost of one small
// fan-out (three calls), which is what a request handler pays; handlers
// run concurrently, hence RunParallel.
func BenchmarkDo(b *testing.B) {
	var sink atomic.Int64
	f := func(context.Context) error { sink.Add(1); return nil }
	fns := []func(context.Context) error{f, f, f}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := fanout.Do(ctx, fns); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkFirst(b *testing.B) {
	var sink atomic.Int64
	f := func(context.Context) (int64, error) { return sink.Add(1), nil }
	fns := []func(context.Context) (int64, error){f, f, f}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := fanout.First(ctx, fns); err != nil {
				b.Fatal(err)
			}
		}
	})
}
