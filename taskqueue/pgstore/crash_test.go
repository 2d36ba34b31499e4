package pgstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/faultproxy"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// crashLease is the lease of the crash tests: short, so that a crashed
// worker's tasks come back quickly, and still some hundred times longer
// than a task runs.
const crashLease = time.Second

// crashOptions are the store options of every instance in the crash tests.
var crashOptions = pgstore.Options{Lease: crashLease, RescueInterval: crashLease / 5}

// execution is one run of a task's handler, on one instance.
type execution struct {
	start, end time.Time
	on         string
}

// ledger records every execution of every task, and every OnFinish.
type ledger struct {
	mu       sync.Mutex
	runs     map[string][]execution
	finishes map[string]int
	total    atomic.Int64 // OnFinish calls
}

func newLedger() *ledger {
	return &ledger{runs: map[string][]execution{}, finishes: map[string]int{}}
}

func (l *ledger) run(id, on string, start, end time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[id] = append(l.runs[id], execution{start, end, on})
}

func (l *ledger) finished(info taskqueue.Info) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finishes[info.ID]++
	l.total.Add(1)
}

// crashable is an instance whose every connection to Postgres goes through
// a proxy, so that killing it cuts it off at once, as a crash or a
// partition does: it renews no lease, releases nothing and records no
// outcome, and its tasks stay claimed until their leases lapse.
type crashable struct {
	inflight atomic.Int64 // handlers running now
	r        *taskqueue.Runner
	store    *pgstore.Store
	proxy    *faultproxy.Proxy
	cancel   context.CancelFunc
}

// startCrashable starts instance name on schema with workers workers whose
// handler waits for work (or its ctx) and records each execution in l.
func startCrashable(t *testing.T, schema, name string, workers int, work time.Duration, l *ledger) *crashable {
	t.Helper()
	proxy, err := faultproxy.New(addrOf(connConfig(t, schema, "")))
	require.NoError(t, err)
	db := connect(t, schema, proxy.Addr())
	store, err := pgstore.New(db, withSchema(crashOptions, schema))
	require.NoError(t, err)
	var c *crashable
	r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: workers, MaxAttempts: 1000, OnFinish: l.finished})
	require.NoError(t, err)
	require.NoError(t, taskqueue.Handle(r, "work", func(ctx context.Context, job *taskqueue.Job, _ args) (int, error) {
		start := time.Now()
		c.inflight.Add(1)
		defer func() {
			l.run(job.ID(), name, start, time.Now())
			c.inflight.Add(-1)
		}()
		tm := time.NewTimer(work)
		defer tm.Stop()
		select {
		case <-tm.C:
			return 1, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}))
	c = &crashable{r: r, store: store, proxy: proxy}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	require.NoError(t, r.Start(ctx))
	t.Cleanup(c.stop)
	return c
}

func withSchema(o pgstore.Options, schema string) pgstore.Options {
	o.Schema = schema
	return o
}

// kill cuts the instance off from Postgres and cancels its Runner's ctx
// without Shutdown: its handlers return, and nothing they or the Runner
// try to write afterwards reaches the database.
func (c *crashable) kill() {
	c.proxy.Cut()
	c.cancel()
}

// stop reclaims the goroutines of a killed instance once the test is done
// with it; by then nothing it does reaches the database.
func (c *crashable) stop() {
	c.kill()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.r.Shutdown(ctx)
	_ = c.store.Close()
	_ = c.proxy.Close()
}

// survivor starts an instance with direct connections that is never killed.
func survivor(t *testing.T, schema string, workers int, work time.Duration, l *ledger) *taskqueue.Runner {
	t.Helper()
	store := open(t, connect(t, schema, ""), schema, crashOptions)
	r := runner(t, store, taskqueue.Options{Workers: workers, MaxAttempts: 1000, OnFinish: l.finished, PollInterval: 50 * time.Millisecond}, func(r *taskqueue.Runner) {
		require.NoError(t, taskqueue.Handle(r, "work", func(ctx context.Context, job *taskqueue.Job, _ args) (int, error) {
			start := time.Now()
			defer func() { l.run(job.ID(), "survivor", start, time.Now()) }()
			tm := time.NewTimer(work)
			defer tm.Stop()
			select {
			case <-tm.C:
				return 1, nil
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}))
	})
	return r
}

func TestACrashedWorkersTaskRunsAgainAfterItsLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schema := setup(t)
	l := newLedger()
	a := startCrashable(t, schema, "a", 1, time.Hour, l)
	b := survivor(t, schema, 1, 0, l)

	info, err := a.r.Submit(ctx, "work", args{})
	require.NoError(t, err)
	eventually(t, 5*time.Second, "A runs the task", func() bool {
		got, err := b.Get(ctx, info.ID)
		require.NoError(t, err)
		return got.Status == taskqueue.StatusRunning
	})
	killed := time.Now()
	a.kill()
	require.NoError(t, b.Start(ctx))
	waitCtx, cancel := context.WithTimeout(ctx, 4*crashLease)
	defer cancel()
	done, err := b.Wait(waitCtx, info.ID)
	require.NoError(t, err, "B finishes the task A left")
	took := time.Since(killed)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
	require.Equal(t, 2, done.Attempt, "A's lost attempt is counted")
	require.Less(t, took, 2*crashLease, "within about two lease lengths of the crash")
	t.Logf("the task ran again %v after its worker was killed (lease %v)", took, crashLease)

	l.mu.Lock()
	defer l.mu.Unlock()
	runs := l.runs[info.ID]
	require.Len(t, runs, 2)
	require.Equal(t, "a", runs[0].on)
	require.Equal(t, "survivor", runs[1].on)
	require.False(t, runs[1].start.Before(runs[0].end), "B started only after A's handler had stopped")
}

func TestTenThousandTasksSurviveFiveCrashesExactlyOnce(t *testing.T) {
	t.Parallel()
	const (
		tasks   = 10_000
		crashes = 5
		workers = 16
		work    = 2 * time.Millisecond
	)
	ctx := context.Background()
	_, schema := setup(t)
	l := newLedger()
	b := survivor(t, schema, workers, work, l)
	ids := make([]string, tasks)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < tasks; i += 8 {
				info, err := b.Submit(ctx, "work", args{N: i})
				require.NoError(t, err)
				ids[i] = info.ID
			}
		})
	}
	wg.Wait()
	require.NoError(t, b.Start(ctx))

	// One instance is killed mid-stream, with tasks in its hands, and a
	// new one takes its place; five times.
	for k := range crashes + 1 {
		a := startCrashable(t, schema, fmt.Sprintf("a%d", k), workers, work, l)
		if k == crashes {
			break // the last one lives
		}
		target := int64(tasks * (k + 1) / (crashes + 2))
		eventually(t, 60*time.Second, "work goes on, and the instance is mid-task", func() bool {
			return l.total.Load() >= target && a.inflight.Load() > 0
		})
		a.kill()
	}
	eventually(t, 60*time.Second, "every task finishes", func() bool {
		st, err := b.Stats(ctx)
		require.NoError(t, err)
		return st.Succeeded == tasks
	})

	st, err := b.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Succeeded: tasks}, st, "every task ended in one terminal state")
	l.mu.Lock()
	defer l.mu.Unlock()
	again := 0
	for i, id := range ids {
		runs := l.runs[id]
		require.NotEmpty(t, runs, "task %d ran", i)
		require.LessOrEqual(t, l.finishes[id], 1, "task %d was finished once at most", i)
		slices.SortFunc(runs, func(x, y execution) int { return x.start.Compare(y.start) })
		for j := 1; j < len(runs); j++ {
			require.False(t, runs[j].start.Before(runs[j-1].end),
				"task %d: the execution on %s started at %v, before the one on %s ended at %v",
				i, runs[j].on, runs[j].start, runs[j-1].on, runs[j-1].end)
		}
		if len(runs) > 1 {
			again++
		}
	}
	byInstance := map[string]int{}
	for _, runs := range l.runs {
		for _, r := range runs {
			byInstance[r.on]++
		}
	}
	t.Logf("executions by instance: %v", byInstance)
	require.NotZero(t, again, "the crashes interrupted tasks, which ran again")
	t.Logf("%d tasks were interrupted by a crash and ran again", again)
}
