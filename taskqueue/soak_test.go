package taskqueue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

// soakSize is the number of tasks TestSoak runs: reduced in the normal run
// to stay within the package's time budget under -race, the full 100,000
// with ASYNCKIT_SOAK=1.
func soakSize() int {
	if os.Getenv("ASYNCKIT_SOAK") == "1" {
		return 100_000
	}
	return 10_000
}

// The soak's task mix, by N % 10.
const (
	soakFailAlways = 5 // error every attempt: failed after 3
	soakRetryOnce  = 6 // error on attempt 1, then success
	soakPanic      = 7 // panics every attempt: failed after 3
	soakPermanent  = 8 // permanent error: failed after 1
	soakCancel     = 9 // long-running, cancelled right after Submit
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func TestSoak(t *testing.T) {
	n := soakSize()
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		const retention = time.Minute
		var (
			mu      sync.Mutex
			endings map[string]int // made after the baseline is taken
			done    = make(chan struct{})
		)
		r, err := taskqueue.New(taskqueue.Options{
			Workers:     8,
			QueueSize:   256,
			MaxAttempts: 3,
			Retention:   retention,
			Backoff:     func(attempt int) time.Duration { return time.Duration(attempt) * time.Millisecond },
			OnFinish: func(info taskqueue.Info) {
				mu.Lock()
				defer mu.Unlock()
				endings[info.ID]++
				if len(endings) == n && endings[info.ID] == 1 {
					close(done)
				}
			},
		})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "mix", func(ctx context.Context, job *taskqueue.Job, p int) (int, error) {
			switch p % 10 {
			case soakFailAlways:
				return 0, fmt.Errorf("task %d attempt %d failed", p, job.Attempt())
			case soakRetryOnce:
				if job.Attempt() == 1 {
					return 0, errors.New("transient")
				}
			case soakPanic:
				panic(fmt.Sprintf("task %d", p))
			case soakPermanent:
				return 0, taskqueue.Permanent(errors.New("bad input"))
			case soakCancel:
				select {
				case <-time.After(time.Hour):
					return 0, errors.New("was not cancelled")
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}
			if err := job.Progress(100, "done"); err != nil {
				return 0, err
			}
			return p, nil
		}))
		require.NoError(t, r.Start(ctx))
		baseline := heapInUse()

		endings = make(map[string]int, n)
		ids := make([]string, n)
		fullRetries := 0
		for i := range n {
			for {
				info, err := r.Submit(ctx, "mix", i)
				if errors.Is(err, taskqueue.ErrQueueFull) {
					fullRetries++
					time.Sleep(time.Millisecond) // backpressure: let the workers drain
					continue
				}
				require.NoError(t, err)
				ids[i] = info.ID
				break
			}
			if i%10 == soakCancel {
				require.NoError(t, r.Cancel(ctx, ids[i]))
			}
		}
		<-done
		peak := heapInUse()

		want := map[taskqueue.Status]int{}
		for i, id := range ids {
			info, err := r.Get(ctx, id)
			require.NoError(t, err)
			require.Equal(t, 1, endings[id], "task %d ended once", i)
			wantStatus, wantAttempts := taskqueue.StatusSucceeded, 1
			switch i % 10 {
			case soakFailAlways, soakPanic:
				wantStatus, wantAttempts = taskqueue.StatusFailed, 3
			case soakRetryOnce:
				wantAttempts = 2
			case soakPermanent:
				wantStatus = taskqueue.StatusFailed
			case soakCancel:
				wantStatus, wantAttempts = taskqueue.StatusCanceled, info.Attempt // 0 if cancelled pending, 1 if running
				require.LessOrEqual(t, info.Attempt, 1)
			}
			require.Equal(t, wantStatus, info.Status, "task %d: %s", i, info.Error)
			require.Equal(t, wantAttempts, info.Attempt, "task %d", i)
			want[wantStatus]++
		}
		st, err := r.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, taskqueue.Stats{
			Succeeded: want[taskqueue.StatusSucceeded],
			Failed:    want[taskqueue.StatusFailed],
			Canceled:  want[taskqueue.StatusCanceled],
		}, st)
		require.Equal(t, n, st.Succeeded+st.Failed+st.Canceled, "the counts add up")
		require.Equal(t, n*6/10, st.Succeeded)
		require.Equal(t, n*3/10, st.Failed)
		require.Equal(t, n/10, st.Canceled)

		// After Retention and one sweep, everything is gone and memory is back.
		ids, endings = nil, nil
		time.Sleep(retention + retention/4)
		synctest.Wait()
		st, err = r.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, taskqueue.Stats{}, st)
		after := heapInUse()
		t.Logf("soak: %d tasks, %d ErrQueueFull retries; HeapInuse baseline %d KiB, peak %d KiB, after retention %d KiB",
			n, fullRetries, baseline>>10, peak>>10, after>>10)
		require.Greater(t, peak, baseline+uint64(n)*200, "the peak holds every finished task")
		require.Less(t, after, baseline+1<<20, "memory returns to within 1 MiB of the baseline")
		require.NoError(t, r.Shutdown(ctx))
	})
}
