package taskqueue_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// The workload, the same for every subject: no-op tasks, 100 workers in
// one process, a pool of 8 connections to the Postgres named by
// DATABASE_URL, each subject in a schema of its own.
const (
	workers   = 100
	poolConns = 8
	rate      = 500 // tasks a second in the latency benchmark
)

// queue is one subject: a way to enqueue no-op tasks and to have them run,
// reporting each completion to done with the task's id.
type queue interface {
	// fill enqueues n tasks before start, as fast as the subject allows.
	fill(tb testing.TB, n int)
	// start starts the workers; done is called once per completed task.
	start(tb testing.TB)
	// submit enqueues one task and returns its id.
	submit(tb testing.TB) string
}

type subject struct {
	name string
	open func(tb testing.TB, cfg *pgx.ConnConfig, done func(id string)) queue
}

var subjects = []subject{
	{"asynckit-pgstore", func(tb testing.TB, cfg *pgx.ConnConfig, done func(string)) queue {
		return openPgstore(tb, cfg, done, false)
	}},
	{"asynckit-pgstore-pool", func(tb testing.TB, cfg *pgx.ConnConfig, done func(string)) queue {
		return openPgstore(tb, cfg, done, true)
	}},
	{"river-default", func(tb testing.TB, cfg *pgx.ConnConfig, done func(string)) queue {
		return openRiver(tb, cfg, done, 0)
	}},
	{"river-cooldown-1ms", func(tb testing.TB, cfg *pgx.ConnConfig, done func(string)) queue {
		return openRiver(tb, cfg, done, time.Millisecond)
	}},
}

// BenchmarkBurnDown enqueues b.N no-op tasks, then starts the workers and
// measures how fast they empty the queue. Run it with -benchtime 20000x to
// match the reference figures.
func BenchmarkBurnDown(b *testing.B) {
	for _, s := range subjects {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			var finished atomic.Int64
			all := make(chan struct{})
			n := int64(b.N)
			q := s.open(b, testenv.PostgresConfig(b), func(string) {
				if finished.Add(1) == n {
					close(all)
				}
			})
			q.fill(b, b.N)
			b.ResetTimer()
			start := time.Now()
			q.start(b)
			<-all
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
		})
	}
}

// BenchmarkLatency500 enqueues b.N no-op tasks at 500 a second into running
// workers and reports the time from the start of each enqueue to the
// task's completion, at the 50th and 99th percentiles. Run it with
// -benchtime 2500x or more.
func BenchmarkLatency500(b *testing.B) {
	for _, s := range subjects {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			var mu sync.Mutex
			started := make(map[string]time.Time, b.N)
			var early []string // completed before submit returned its id
			completed := make(map[string]time.Time, b.N)
			all := make(chan struct{})
			q := s.open(b, testenv.PostgresConfig(b), func(id string) {
				at := time.Now()
				mu.Lock()
				defer mu.Unlock()
				completed[id] = at
				if _, ok := started[id]; !ok {
					early = append(early, id)
				}
				if len(completed) == b.N {
					close(all)
				}
			})
			q.start(b)
			time.Sleep(300 * time.Millisecond) // let listeners connect and workers settle
			starts := make([]time.Time, 0, b.N)
			ids := make([]string, 0, b.N)
			b.ResetTimer()
			tick := time.NewTicker(time.Second / rate)
			for range b.N {
				<-tick.C
				at := time.Now()
				id := q.submit(b)
				starts, ids = append(starts, at), append(ids, id)
				mu.Lock()
				started[id] = at
				mu.Unlock()
			}
			tick.Stop()
			<-all
			b.StopTimer()
			lat := make([]time.Duration, len(ids))
			for i, id := range ids {
				lat[i] = completed[id].Sub(starts[i])
			}
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[(len(lat)-1)*99/100]), "p99-ms")
		})
	}
}

// pgstoreQueue is taskqueue's Runner over pgstore with default options.
type pgstoreQueue struct {
	r *taskqueue.Runner
}

// openPgstore opens pgstore over a *sql.DB, and with pool also over a native
// pgx pool for its own queries (each of poolConns connections).
func openPgstore(tb testing.TB, cfg *pgx.ConnConfig, done func(string), pool bool) queue {
	schema := cfg.RuntimeParams["search_path"]
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(poolConns)
	db.SetMaxIdleConns(poolConns)
	ctx := context.Background()
	if err := pgstore.Migrate(ctx, db, schema); err != nil {
		tb.Fatal(err)
	}
	opts := pgstore.Options{Schema: schema}
	if pool {
		pcfg, err := pgxpool.ParseConfig("")
		if err != nil {
			tb.Fatal(err)
		}
		pcfg.ConnConfig = cfg.Copy()
		pcfg.MaxConns = poolConns
		p, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(p.Close)
		opts.Pool = p
	}
	store, err := pgstore.New(db, opts)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: workers, OnFinish: func(info taskqueue.Info) { done(info.ID) }})
	if err != nil {
		tb.Fatal(err)
	}
	if err := taskqueue.Handle(r, "noop", func(context.Context, *taskqueue.Job, struct{}) (struct{}, error) {
		return struct{}{}, nil
	}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Shutdown(ctx)
		_ = store.Close()
		_ = db.Close()
	})
	return &pgstoreQueue{r: r}
}

func (q *pgstoreQueue) fill(tb testing.TB, n int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if _, err := q.r.Submit(context.Background(), "noop", struct{}{}); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		tb.Fatal(*err)
	}
}

func (q *pgstoreQueue) start(tb testing.TB) {
	if err := q.r.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

func (q *pgstoreQueue) submit(tb testing.TB) string {
	info, err := q.r.Submit(context.Background(), "noop", struct{}{})
	if err != nil {
		tb.Fatal(err)
	}
	return info.ID
}

// riverQueue is a River client on pgx with 100 workers in its default
// queue; cooldown, when not zero, replaces River's FetchCooldown (100ms by
// default), the least time between two fetches.
type riverQueue struct {
	client *river.Client[pgx.Tx]
	events <-chan *river.Event
	stopEv func()
	done   func(string)
	wg     sync.WaitGroup
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

func openRiver(tb testing.TB, cfg *pgx.ConnConfig, done func(string), cooldown time.Duration) queue {
	// River takes schema names of at most 46 bytes: use a shorter schema
	// of the same unique prefix, made and dropped here.
	schema := cfg.RuntimeParams["search_path"]
	schema = schema[:min(len(schema), 46)] + "_r"
	schema = schema[len(schema)-min(len(schema), 46):]
	cfg = cfg.Copy()
	cfg.RuntimeParams["search_path"] = schema
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		tb.Fatal(err)
	}
	pcfg.ConnConfig = cfg.Copy()
	pcfg.MaxConns = poolConns
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Error(err)
		}
		pool.Close()
	})
	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, &rivermigrate.Config{Schema: schema})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		tb.Fatal(err)
	}
	ws := river.NewWorkers()
	river.AddWorker(ws, noopWorker{})
	client, err := river.NewClient(driver, &river.Config{
		Queues:        map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:       ws,
		Schema:        schema,
		FetchCooldown: cooldown,
	})
	if err != nil {
		tb.Fatal(err)
	}
	q := &riverQueue{client: client, done: done}
	q.events, q.stopEv = client.SubscribeConfig(&river.SubscribeConfig{Kinds: []river.EventKind{river.EventKindJobCompleted}, ChanSize: 1 << 20})
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = client.Stop(ctx)
		q.stopEv()
		q.wg.Wait()
	})
	return q
}

func (q *riverQueue) fill(tb testing.TB, n int) {
	const chunk = 1000
	for i := 0; i < n; i += chunk {
		params := make([]river.InsertManyParams, min(chunk, n-i))
		for j := range params {
			params[j] = river.InsertManyParams{Args: noopArgs{}}
		}
		if _, err := q.client.InsertManyFast(context.Background(), params); err != nil {
			tb.Fatal(err)
		}
	}
}

func (q *riverQueue) start(tb testing.TB) {
	q.wg.Go(func() {
		for ev := range q.events {
			q.done(fmt.Sprint(ev.Job.ID))
		}
	})
	if err := q.client.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

func (q *riverQueue) submit(tb testing.TB) string {
	res, err := q.client.Insert(context.Background(), noopArgs{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprint(res.Job.ID)
}
