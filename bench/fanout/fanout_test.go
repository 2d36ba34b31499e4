// Package fanout_test compares github.com/asynckit/asynckit/fanout with the
// other ways Go code fans out a slice of work, on one workload: n = 10,000
// items, at most 8 running at once, and trivial work (an atomic add), so
// that what is measured is each library's own cost per item.
//
// Every subject returns its values in input order in a fresh slice, as
// fanout.Map does, and every one is called through the same signature
// func(context.Context, int) (int, error) where its API allows it (conc's
// iter.Map takes no context and returns no error; it gets the same work).
// ns/item is ns/op divided by n. BenchmarkFanoutSleep runs the same
// libraries on waiting work instead: 100 items, each call sleeping 1 ms,
// at most 10 at once.
//
// The bare-* subjects are not libraries but floors: 8 goroutines pulling an
// atomic index with no context, error handling or panic recovery, writing
// either []int (Map's output) or []fanout.Result[int] (Settle's output).
// The gap between the two is what returning a []Result[R] costs by itself.
// The alloc-* subjects make the output slice and call nothing: the part of
// that gap which is allocating and zeroing 240 KB of pointer-holding
// memory (which the GC must also scan) rather than 80 KB of scalars, paid
// before any worker starts.
package fanout_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alitto/pond/v2"
	"github.com/sourcegraph/conc/iter"
	"github.com/sourcegraph/conc/pool"
	"golang.org/x/sync/errgroup"

	"github.com/asynckit/asynckit/fanout"
)

const (
	items = 10_000
	limit = 8
)

// work is the workload's call: an atomic add on a shared counter, then a
// sleep of sleep when that is set; limit is how many calls may run at once.
type work struct {
	n     atomic.Int64
	limit int
	sleep time.Duration
}

func (w *work) call(_ context.Context, _ int) (int, error) {
	v := int(w.n.Add(1))
	if w.sleep > 0 {
		time.Sleep(w.sleep)
	}
	return v, nil
}

// runner runs one fan-out of w.call over in with at most w.limit calls at
// once. check reports a wrong result.
type runner func(b *testing.B, ctx context.Context, w *work, in []int) (check func() error)

// subject is one way to fan out. newRunner, when set, builds the runner
// once per benchmark (for a library with a long-lived pool); otherwise run
// is the runner.
type subject struct {
	name      string
	run       runner
	newRunner func(b *testing.B, limit int) runner
}

var subjects = []subject{
	{name: "asynckit-Map", run: runAsynckitMap},
	{name: "asynckit-Settle", run: runAsynckitSettle},
	{name: "conc-iter.Map", run: runConcIterMap},
	{name: "conc-pool", run: runConcPool},
	{name: "errgroup", run: runErrgroup},
	{name: "pond", newRunner: newPondRunner},
	{name: "channel-pool", run: runChannelPool},
	{name: "bare-int", run: runBareInt},
	{name: "bare-result", run: runBareResult},
	{name: "alloc-int", run: runAllocInt},
	{name: "alloc-result", run: runAllocResult},
}

// BenchmarkFanout runs every subject on the workload. Run the whole set
// several times (-count, or a shell loop for interleaved runs) and compare
// ratios within one run: on a shared machine the absolute numbers drift.
func BenchmarkFanout(b *testing.B) {
	for _, s := range subjects {
		b.Run(fmt.Sprintf("n=%d/limit=%d/%s", items, limit, s.name), func(b *testing.B) {
			benchmarkSubject(b, s, items, limit, 0)
		})
	}
}

// BenchmarkFanoutSleep runs the libraries on 100 items of which each call
// sleeps 1 ms, at most 10 at once: work that waits, like a call to another
// service. The floor is 10 rounds of 1 ms; what a library adds to it is
// how soon it starts the next call when one ends. The bare-* and alloc-*
// floors are left out, having nothing to say about waiting work.
func BenchmarkFanoutSleep(b *testing.B) {
	const n, limit = 100, 10
	for _, s := range subjects {
		if strings.HasPrefix(s.name, "bare-") || strings.HasPrefix(s.name, "alloc-") {
			continue
		}
		b.Run(fmt.Sprintf("n=%d/limit=%d/sleep=1ms/%s", n, limit, s.name), func(b *testing.B) {
			benchmarkSubject(b, s, n, limit, time.Millisecond)
		})
	}
}

// benchmarkSubject runs s on n items, at most lim at once, each call
// sleeping for sleep.
func benchmarkSubject(b *testing.B, s subject, n, lim int, sleep time.Duration) {
	w := &work{limit: lim, sleep: sleep}
	in := make([]int, n)
	ctx := context.Background()
	run := s.run
	if s.newRunner != nil {
		run = s.newRunner(b, lim)
	}
	b.ReportAllocs()
	var check func() error
	for b.Loop() {
		check = run(b, ctx, w, in)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/item")
	if got, want := w.n.Load(), int64(b.N)*int64(n); got != want && !strings.HasPrefix(s.name, "alloc-") {
		b.Fatalf("%s made %d calls in %d runs, want %d", s.name, got, b.N, want)
	}
	if err := check(); err != nil {
		b.Fatalf("%s: %v", s.name, err)
	}
}

// distinct reports an error unless the values of one run are the distinct
// counter values of its calls, i.e. every slot was written exactly once.
func distinct(vals []int) error {
	items := len(vals)
	lo := vals[0]
	for _, v := range vals {
		lo = min(lo, v)
	}
	seen := make([]bool, items)
	for i, v := range vals {
		k := v - lo
		if k < 0 || k >= items || seen[k] {
			return fmt.Errorf("value %d at %d is not one of the run's %d distinct calls", v, i, items)
		}
		seen[k] = true
	}
	return nil
}

func runAsynckitMap(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	out, err := fanout.Map(ctx, in, w.call, fanout.Limit(w.limit))
	if err != nil {
		b.Fatal(err)
	}
	return func() error { return distinct(out) }
}

func runAsynckitSettle(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	res := fanout.Settle(ctx, in, w.call, fanout.Limit(w.limit))
	return func() error {
		vals := make([]int, len(res))
		for i, r := range res {
			if r.Err != nil {
				return fmt.Errorf("item %d: %w", i, r.Err)
			}
			vals[i] = r.Value
		}
		return distinct(vals)
	}
}

func runConcIterMap(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	out := iter.Mapper[int, int]{MaxGoroutines: w.limit}.Map(in, func(p *int) int {
		v, _ := w.call(ctx, *p)
		return v
	})
	return func() error { return distinct(out) }
}

func runConcPool(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	out := make([]int, len(in))
	p := pool.New().WithErrors().WithContext(ctx).WithCancelOnError().WithMaxGoroutines(w.limit)
	for i, it := range in {
		p.Go(func(ctx context.Context) error {
			v, err := w.call(ctx, it)
			out[i] = v
			return err
		})
	}
	if err := p.Wait(); err != nil {
		b.Fatal(err)
	}
	return func() error { return distinct(out) }
}

func runErrgroup(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	out := make([]int, len(in))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.limit)
	for i, it := range in {
		g.Go(func() error {
			v, err := w.call(gctx, it)
			out[i] = v
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	return func() error { return distinct(out) }
}

// newPondRunner starts one long-lived pond pool for the whole benchmark,
// the way pond is meant to be used (its workers are started once, not per
// fan-out), and stops it when the benchmark ends. Each fan-out is a group.
func newPondRunner(b *testing.B, limit int) runner {
	p := pond.NewPool(limit)
	b.Cleanup(p.StopAndWait)
	return func(b *testing.B, ctx context.Context, w *work, in []int) func() error {
		out := make([]int, len(in))
		g := p.NewGroup()
		for i, it := range in {
			g.SubmitErr(func() error {
				v, err := w.call(ctx, it)
				out[i] = v
				return err
			})
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		return func() error { return distinct(out) }
	}
}

// runChannelPool is the hand-written pool: limit workers reading indices
// from an unbuffered channel that one producer fills.
func runChannelPool(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	out := make([]int, len(in))
	idx := make(chan int)
	var wg sync.WaitGroup
	for range w.limit {
		wg.Go(func() {
			for i := range idx {
				out[i], _ = w.call(ctx, in[i])
			}
		})
	}
	for i := range in {
		idx <- i
	}
	close(idx)
	wg.Wait()
	return func() error { return distinct(out) }
}

// runBareInt is the floor for Map: limit goroutines pulling an atomic index
// and writing []int, with no context, errors or panic recovery.
func runBareInt(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	out := make([]int, len(in))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w.limit {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(in); i = int(next.Add(1) - 1) {
				out[i], _ = w.call(ctx, in[i])
			}
		})
	}
	wg.Wait()
	return func() error { return distinct(out) }
}

// runBareResult is runBareInt writing Settle's output type instead: the
// same loop, a 24-byte element holding a pointer (the error) instead of an
// 8-byte scalar. Only the value is written, as Settle does when the call
// succeeds.
func runBareResult(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	res := make([]fanout.Result[int], len(in))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w.limit {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(in); i = int(next.Add(1) - 1) {
				v, err := w.call(ctx, in[i])
				res[i].Value = v
				if err != nil {
					res[i].Err = err
				}
			}
		})
	}
	wg.Wait()
	return func() error {
		vals := make([]int, len(res))
		for i, r := range res {
			vals[i] = r.Value
		}
		return distinct(vals)
	}
}

// runAllocInt only makes Map's output slice.
func runAllocInt(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	out := make([]int, len(in))
	return func() error {
		if len(out) != len(in) {
			return fmt.Errorf("%d values, want %d", len(out), len(in))
		}
		return nil
	}
}

// runAllocResult only makes Settle's output slice.
func runAllocResult(b *testing.B, ctx context.Context, w *work, in []int) func() error {
	res := make([]fanout.Result[int], len(in))
	return func() error {
		if len(res) != len(in) {
			return fmt.Errorf("%d results, want %d", len(res), len(in))
		}
		return nil
	}
}
