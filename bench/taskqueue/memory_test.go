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

// BenchmarkMemoryNoop measures taskqueue's in-memory store end to end with
// no-op tasks: b.N tasks submitted one after another into a running
// Runner with its default workers (GOMAXPROCS), each claimed, run and
// recorded as succeeded. tasks/s counts finished tasks from the first
// Submit to the last completion. It needs no service.
func BenchmarkMemoryNoop(b *testing.B) {
	b.Run("asynckit-memory", func(b *testing.B) {
		var finished atomic.Int64
		all := make(chan struct{})
		n := int64(b.N)
		r, err := taskqueue.New(taskqueue.Options{
			QueueSize: 1 << 16,
			OnFinish: func(taskqueue.Info) {
				if finished.Add(1) == n {
					close(all)
				}
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := taskqueue.Handle(r, "noop", func(context.Context, *taskqueue.Job, struct{}) (struct{}, error) {
			return struct{}{}, nil
		}); err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := r.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = r.Shutdown(ctx)
		})
		b.ReportAllocs()
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			for {
				_, err := r.Submit(ctx, "noop", struct{}{})
				if err == nil {
					break
				}
				if !errors.Is(err, taskqueue.ErrQueueFull) {
					b.Fatal(err)
				}
				runtime.Gosched() // the queue is full: let the workers drain it
			}
		}
		<-all
		elapsed := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	})
}
