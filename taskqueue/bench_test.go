package taskqueue_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
)

type noop struct{}

// BenchmarkSubmitAndRun measures no-op tasks end to end: submit, claim, run,
// record, through GOMAXPROCS workers. tasks/s counts finished tasks.
func BenchmarkSubmitAndRun(b *testing.B) {
	var done atomic.Int64
	all := make(chan struct{})
	var target atomic.Int64
	r, err := taskqueue.New(taskqueue.Options{
		QueueSize: 1 << 16,
		Retention: time.Second,
		OnFinish: func(taskqueue.Info) {
			if done.Add(1) == target.Load() {
				close(all)
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := taskqueue.Handle(r, "noop", func(context.Context, *taskqueue.Job, noop) (noop, error) { return noop{}, nil }); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	target.Store(int64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for {
			_, err := r.Submit(ctx, "noop", noop{})
			if err == nil {
				break
			}
			if !errors.Is(err, taskqueue.ErrQueueFull) {
				b.Fatal(err)
			}
			runtime.Gosched()
		}
	}
	<-all
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	if err := r.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}
