package taskqueuetest

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func init() {
	register(
		behaviour{"Shutdown lets running tasks finish and reports pending ones", shutdownGraceful},
		behaviour{"Shutdown past its ctx interrupts handlers and releases their tasks", shutdownInterrupts},
		behaviour{"Wait returns the final Info, or ctx's error", waitForTask},
		behaviour{"Subscribe streams updates, coalesced for slow readers, closed at the end", subscribeUpdates},
	)
}

func shutdownGraceful(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	release := make(chan struct{})
	b := newBundle(t, newStore, taskqueue.Options{Workers: 1}, func(r *taskqueue.Runner) {
		handle(t, r, "held", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			select {
			case <-release:
				return Result{Double: 2}, nil
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
		})
	}).start()
	running := b.submit("held", Payload{})
	synctestWaitStatus(t, b, running.ID, taskqueue.StatusRunning)
	queued := b.submit("held", Payload{})
	later := b.submit("held", Payload{}, taskqueue.Delay(time.Minute))

	go func() {
		time.Sleep(10 * time.Second)
		close(release)
	}()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := b.stop(ctx)
	var se *taskqueue.ShutdownError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 2, se.Pending, "the queued and the delayed task are reported, not dropped")
	require.Zero(t, se.Interrupted)
	require.NoError(t, se.Err)
	requireTime(t, start.Add(10*time.Second), time.Now(), "Shutdown waited for the running handler")

	require.Equal(t, taskqueue.StatusSucceeded, b.get(running.ID).Status)
	require.Equal(t, taskqueue.StatusPending, b.get(queued.ID).Status)
	require.Equal(t, taskqueue.StatusPending, b.get(later.ID).Status)

	_, err = b.r.Submit(context.Background(), "held", Payload{})
	require.ErrorIs(t, err, taskqueue.ErrClosed)
	require.ErrorIs(t, b.r.Start(context.Background()), taskqueue.ErrClosed)
	require.ErrorIs(t, b.r.Shutdown(context.Background()), taskqueue.ErrClosed)
	_, err = b.r.Wait(context.Background(), queued.ID)
	require.ErrorIs(t, err, taskqueue.ErrClosed, "Wait does not hang on a Runner that is gone")
}

func shutdownInterrupts(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	causes := make(chan error, 1)
	b := newBundle(t, newStore, taskqueue.Options{Workers: 2, MaxAttempts: 1}, func(r *taskqueue.Runner) {
		handle(t, r, "stuck", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return Result{}, ctx.Err()
		})
		handle(t, r, "quick", double)
	}).start()
	stuck := b.submit("stuck", Payload{})
	synctestWaitStatus(t, b, stuck.ID, taskqueue.StatusRunning)
	quick := b.submit("quick", Payload{N: 1})
	b.wait(quick.ID)

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.stop(ctx)
	var se *taskqueue.ShutdownError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 1, se.Interrupted)
	require.Equal(t, 1, se.Pending)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, <-causes, taskqueue.ErrClosed, "the handler learns why")
	requireTime(t, start.Add(5*time.Second), time.Now(), "Shutdown gave up at its deadline")

	info := b.get(stuck.ID)
	require.Equal(t, taskqueue.StatusPending, info.Status, "released, not failed")
	require.Equal(t, 0, info.Attempt, "the interrupted attempt is not counted")
}

func waitForTask(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "slow", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			time.Sleep(time.Minute)
			return Result{Double: 2 * p.N}, nil
		})
	}).start()
	info := b.submit("slow", Payload{N: 4})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last, err := b.r.Wait(ctx, info.ID)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, taskqueue.StatusRunning, last.Status, "the latest Info seen comes back with ctx's error")

	done := b.wait(info.ID)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
	again, err := b.r.Wait(context.Background(), info.ID)
	require.NoError(t, err, "Wait on a finished task returns at once")
	require.Equal(t, done, again)
}

func subscribeUpdates(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	steps := make(chan int)
	b := newBundle(t, newStore, taskqueue.Options{ProgressInterval: time.Nanosecond, MaxAttempts: 2, Backoff: func(int) time.Duration { return time.Second }}, func(r *taskqueue.Runner) {
		handle(t, r, "steps", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			for pct := range steps {
				if pct < 0 {
					return Result{}, errBoom
				}
				if err := job.Progress(pct, ""); err != nil {
					return Result{}, err
				}
			}
			return Result{Double: 1}, nil
		})
	})
	info := b.submit("steps", Payload{})
	ch, err := b.r.Subscribe(context.Background(), info.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusPending, (<-ch).Status, "the current Info comes first")

	b.start()
	synctest.Wait()
	got := <-ch
	require.Equal(t, taskqueue.StatusRunning, got.Status)
	require.Equal(t, 1, got.Attempt)
	steps <- 10
	synctest.Wait()
	require.Equal(t, 10, (<-ch).Progress.Percent)

	// A slow reader: three updates while it reads none leave only the latest.
	steps <- 20
	steps <- 30
	steps <- 40
	synctest.Wait()
	require.Equal(t, 40, (<-ch).Progress.Percent)
	select {
	case extra := <-ch:
		t.Fatalf("an older update was kept: %+v", extra)
	default:
	}

	steps <- -1 // attempt 1 fails: pending again
	synctest.Wait()
	retry := <-ch
	require.Equal(t, taskqueue.StatusPending, retry.Status)
	require.Equal(t, "boom", retry.Error)

	late, err := b.r.Subscribe(context.Background(), info.ID)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	gone, err := b.r.Subscribe(ctx, info.ID)
	require.NoError(t, err)
	cancel()
	synctest.Wait()
	var fromGone []taskqueue.Info
	for i := range gone {
		fromGone = append(fromGone, i)
	}
	require.LessOrEqual(t, len(fromGone), 1, "a subscription whose ctx ended is closed")

	time.Sleep(time.Second) // the retry starts
	synctest.Wait()
	close(steps)
	var final taskqueue.Info
	for i := range ch {
		final = i
	}
	require.Equal(t, taskqueue.StatusSucceeded, final.Status, "the terminal Info is never lost, then the channel closes")
	for i := range late {
		final = i
	}
	require.Equal(t, taskqueue.StatusSucceeded, final.Status)

	done, err := b.r.Subscribe(context.Background(), info.ID)
	require.NoError(t, err)
	require.Equal(t, taskqueue.StatusSucceeded, (<-done).Status, "a finished task gives its Info, then closes")
	_, open := <-done
	require.False(t, open)
}
