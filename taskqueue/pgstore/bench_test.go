package pgstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// benchWorkers is each Runner's worker count in the benchmarks: River's
// figures in the issue were taken with 100 workers.
const benchWorkers = 100

// instance is one Runner with a store and a connection pool of its own, as
// one process of a service has.
type instance struct {
	db    *sql.DB
	store *pgstore.Store
	r     *taskqueue.Runner
}

// newInstance opens a pool on schema and a Runner over it whose "noop"
// handler does nothing. onFinish is called for every task it finishes.
func newInstance(tb testing.TB, schema string, opts pgstore.Options, workers int, onFinish func(taskqueue.Info)) *instance {
	tb.Helper()
	cfg := testenv.PostgresConfig(tb)
	cfg.RuntimeParams["search_path"] = schema
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	store := open(tb, db, schema, opts)
	r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: workers, OnFinish: onFinish, PollInterval: 100 * time.Millisecond})
	require.NoError(tb, err)
	require.NoError(tb, taskqueue.Handle(r, "noop", func(context.Context, *taskqueue.Job, int) (int, error) { return 0, nil }))
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
		require.NoError(tb, store.Close())
		_ = db.Close()
	})
	return &instance{db: db, store: store, r: r}
}

// submitAll submits n no-op tasks through r from 8 goroutines.
func submitAll(tb testing.TB, r *taskqueue.Runner, n int) {
	tb.Helper()
	const submitters = 8
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, submitters)
	for range submitters {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := r.Submit(context.Background(), "noop", 0); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	require.NoError(tb, <-errs)
}

// BenchmarkThroughput is a burn-down: b.N no-op tasks are inserted first,
// then 1, 2 or 4 Runners of 100 workers each, each with a store and pool
// of its own, run them all; tasks/s is how fast the queue empties.
func BenchmarkThroughput(b *testing.B) {
	for _, runners := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("runners=%d", runners), func(b *testing.B) {
			b.ReportAllocs()
			db, schema := setup(b)
			_ = db
			var finished atomic.Int64
			all := make(chan struct{})
			n := int64(b.N)
			onFinish := func(taskqueue.Info) {
				if finished.Add(1) == n {
					close(all)
				}
			}
			insts := make([]*instance, runners)
			for i := range insts {
				insts[i] = newInstance(b, schema, pgstore.Options{}, benchWorkers, onFinish)
			}
			submitAll(b, insts[0].r, b.N)
			b.ResetTimer()
			start := time.Now()
			for _, in := range insts {
				require.NoError(b, in.r.Start(context.Background()))
			}
			<-all
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
		})
	}
}

// BenchmarkLatency submits b.N no-op tasks at 500 a second to one Runner
// with the store's default options and reports the time from the start of
// Submit to the end of the attempt (OnFinish), at the 50th and 99th
// percentiles. Run it with -benchtime 2500x or more for stable figures.
func BenchmarkLatency(b *testing.B) {
	const rate = 500
	b.ReportAllocs()
	_, schema := setup(b)
	var mu sync.Mutex
	submitted := make(map[string]time.Time, b.N)
	latencies := make([]time.Duration, 0, b.N)
	all := make(chan struct{})
	onFinish := func(info taskqueue.Info) {
		at := time.Now()
		mu.Lock()
		defer mu.Unlock()
		latencies = append(latencies, at.Sub(submitted[info.ID]))
		if len(latencies) == b.N {
			close(all)
		}
	}
	in := newInstance(b, schema, pgstore.Options{}, benchWorkers, onFinish)
	require.NoError(b, in.r.Start(context.Background()))
	// Let the listener connect and the workers settle into waiting.
	time.Sleep(200 * time.Millisecond)
	b.ResetTimer()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	for range b.N {
		<-tick.C
		start := time.Now()
		mu.Lock() // held across Submit, so OnFinish finds the start time
		info, err := in.r.Submit(context.Background(), "noop", 0)
		if err == nil {
			submitted[info.ID] = start
		}
		mu.Unlock()
		require.NoError(b, err)
	}
	<-all
	b.StopTimer()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
}
