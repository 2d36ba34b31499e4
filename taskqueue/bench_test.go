package taskqueue_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
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

// newIdleRunner returns a Runner with a no-op handler that is never
// started, so submitted tasks stay pending.
func newIdleRunner(b *testing.B, queue int) *taskqueue.Runner {
	r, err := taskqueue.New(taskqueue.Options{QueueSize: queue})
	if err != nil {
		b.Fatal(err)
	}
	if err := taskqueue.Handle(r, "noop", func(context.Context, *taskqueue.Job, noop) (noop, error) { return noop{}, nil }); err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkSubmit measures Submit alone (validation, JSON encoding, id,
// insert) into a store holding up to 64Ki pending tasks; the store is
// replaced, off the clock, whenever it is full.
func BenchmarkSubmit(b *testing.B) {
	const batch = 1 << 16
	ctx := context.Background()
	payload := struct {
		Name string `json:"name"`
		Size int    `json:"size"`
	}{"photo.jpg", 1 << 20}
	run := func(b *testing.B, parallel bool) {
		var mu sync.Mutex
		r := newIdleRunner(b, batch)
		submit := func() {
			for {
				mu.Lock()
				cur := r
				mu.Unlock()
				_, err := cur.Submit(ctx, "noop", payload)
				if err == nil {
					return
				}
				if !errors.Is(err, taskqueue.ErrQueueFull) {
					b.Fatal(err)
				}
				mu.Lock()
				if cur == r {
					b.StopTimer()
					r = newIdleRunner(b, batch)
					b.StartTimer()
				}
				mu.Unlock()
			}
		}
		b.ReportAllocs()
		b.ResetTimer()
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					submit()
				}
			})
		} else {
			for b.Loop() {
				submit()
			}
		}
	}
	b.Run("serial", func(b *testing.B) { run(b, false) })
	b.Run("parallel", func(b *testing.B) { run(b, true) })
}

// BenchmarkGet measures Get by id from parallel callers over a store of
// 10,000 tasks.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	r := newIdleRunner(b, 10_000)
	ids := make([]string, 10_000)
	for i := range ids {
		info, err := r.Submit(ctx, "noop", noop{})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = info.ID
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(7919))
		for pb.Next() {
			i++
			if _, err := r.Get(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJobProgress measures Job.Progress called per item from inside a
// handler: most calls are coalesced and never reach the store.
func BenchmarkJobProgress(b *testing.B) {
	r, err := taskqueue.New(taskqueue.Options{Workers: 1})
	if err != nil {
		b.Fatal(err)
	}
	err = taskqueue.Handle(r, "items", func(ctx context.Context, job *taskqueue.Job, _ noop) (noop, error) {
		// The benchmark's goroutine is blocked in Wait meanwhile.
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := job.Progress(i%101, "processing items"); err != nil {
				return noop{}, err
			}
		}
		b.StopTimer()
		return noop{}, nil
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		b.Fatal(err)
	}
	info, err := r.Submit(ctx, "items", noop{})
	if err != nil {
		b.Fatal(err)
	}
	if done, err := r.Wait(ctx, info.ID); err != nil || done.Status != taskqueue.StatusSucceeded {
		b.Fatal(done.Error, err)
	}
	if err := r.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}
