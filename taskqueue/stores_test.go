package taskqueue_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

// leasingStore is a MemoryStore whose claims carry a lease, as a store
// shared by several processes does, so the Runner's heartbeat path runs.
type leasingStore struct {
	*taskqueue.MemoryStore
	lease time.Duration
	beats atomic.Int32
	last  atomic.Int64 // the latest claim token
}

func (s *leasingStore) Claim(ctx context.Context, kinds []string) (taskqueue.Task, error) {
	t, err := s.MemoryStore.Claim(ctx, kinds)
	if err == nil {
		t.LeaseUntil = time.Now().Add(s.lease)
		s.last.Store(t.ClaimToken)
	}
	return t, err
}

func (s *leasingStore) Heartbeat(ctx context.Context, id string, claim int64) (bool, error) {
	s.beats.Add(1)
	return s.MemoryStore.Heartbeat(ctx, id, claim)
}

func TestLeasedClaims(t *testing.T) {
	setup := func(t *testing.T) (*leasingStore, *taskqueue.Runner, chan error) {
		mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		store := &leasingStore{MemoryStore: mem, lease: 30 * time.Second}
		r, err := taskqueue.New(taskqueue.Options{Store: store, MaxAttempts: 1, Workers: 2})
		require.NoError(t, err)
		causes := make(chan error, 2)
		require.NoError(t, taskqueue.Handle(r, "long", func(ctx context.Context, job *taskqueue.Job, d time.Duration) (int, error) {
			select {
			case <-time.After(d):
				return 1, nil
			case <-ctx.Done():
				causes <- context.Cause(ctx)
				return 0, ctx.Err()
			}
		}))
		require.NoError(t, r.Start(context.Background()))
		return store, r, causes
	}

	t.Run("heartbeats renew the lease every third of it while the handler runs", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store, r, _ := setup(t)
			info, err := r.Submit(context.Background(), "long", 35*time.Second)
			require.NoError(t, err)
			done, err := r.Wait(context.Background(), info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusSucceeded, done.Status)
			require.Equal(t, int32(3), store.beats.Load(), "beats at 10s, 20s and 30s")
			time.Sleep(time.Minute)
			require.Equal(t, int32(3), store.beats.Load(), "no beat after the attempt")
			require.NoError(t, r.Shutdown(context.Background()))
		})
	})

	t.Run("a cancel recorded by another process reaches the handler at the next heartbeat", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store, r, causes := setup(t)
			start := time.Now()
			info, err := r.Submit(context.Background(), "long", time.Hour)
			require.NoError(t, err)
			synctest.Wait()
			_, err = store.Cancel(context.Background(), info.ID) // not through r: r learns by heartbeat
			require.NoError(t, err)
			done, err := r.Wait(context.Background(), info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusCanceled, done.Status)
			require.ErrorIs(t, <-causes, taskqueue.ErrCanceled)
			require.True(t, start.Add(10*time.Second).Equal(done.FinishedAt), "at the first heartbeat")
			require.NoError(t, r.Shutdown(context.Background()))
		})
	})

	t.Run("a lost lease cancels the handler and its outcome is dropped", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			store, r, causes := setup(t)
			info, err := r.Submit(context.Background(), "long", time.Hour)
			require.NoError(t, err)
			synctest.Wait()
			first := store.last.Load()
			// As if another process rescued the task: this claim no longer
			// holds it, and an idle worker claims it again at once.
			_, err = store.Release(context.Background(), info.ID, first)
			require.NoError(t, err)
			synctest.Wait()
			got, err := r.Get(context.Background(), info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusRunning, got.Status)
			require.Equal(t, 1, got.Attempt, "the same attempt number, a new claim")
			require.NotEqual(t, first, store.last.Load())

			_, err = store.Cancel(context.Background(), info.ID)
			require.NoError(t, err)
			time.Sleep(10 * time.Second) // both handlers' first heartbeat
			synctest.Wait()
			require.ElementsMatch(t, []error{taskqueue.ErrLeaseLost, taskqueue.ErrCanceled}, []error{<-causes, <-causes},
				"the stale claim learns it lost the task; the live one that it was cancelled")
			done, err := r.Wait(context.Background(), info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusCanceled, done.Status, "the stale claim's outcome did not overwrite it")
			require.NoError(t, r.Shutdown(context.Background()))
		})
	})
}

// cancelOnClaimStore cancels each task through the Runner right after the
// store hands it to a worker, before the worker has registered it: the
// narrowest window a Cancel can hit.
type cancelOnClaimStore struct {
	*taskqueue.MemoryStore
	r *taskqueue.Runner
}

func (s *cancelOnClaimStore) Claim(ctx context.Context, kinds []string) (taskqueue.Task, error) {
	t, err := s.MemoryStore.Claim(ctx, kinds)
	if err == nil {
		if cerr := s.r.Cancel(ctx, t.ID); cerr != nil {
			return t, cerr
		}
	}
	return t, err
}

func TestCancelBetweenClaimAndStartStillCancels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		store := &cancelOnClaimStore{MemoryStore: mem}
		r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: 1})
		require.NoError(t, err)
		store.r = r
		causes := make(chan error, 1)
		require.NoError(t, taskqueue.Handle(r, "wait", func(ctx context.Context, job *taskqueue.Job, _ int) (int, error) {
			<-ctx.Done() // already done when the handler starts
			causes <- context.Cause(ctx)
			return 1, nil
		}))
		require.NoError(t, r.Start(context.Background()))
		info, err := r.Submit(context.Background(), "wait", 0)
		require.NoError(t, err)
		done, err := r.Wait(context.Background(), info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusCanceled, done.Status)
		require.ErrorIs(t, <-causes, taskqueue.ErrCanceled)
		require.NoError(t, r.Shutdown(context.Background()))
	})
}

func TestStartContextEndingStopsWorkersAndReleasesTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := taskqueue.New(taskqueue.Options{Workers: 1, MaxAttempts: 1})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "wait", func(ctx context.Context, job *taskqueue.Job, _ int) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}))
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, r.Start(ctx))
		info, err := r.Submit(context.Background(), "wait", 0)
		require.NoError(t, err)
		synctest.Wait()
		cancel()
		synctest.Wait()
		got, err := r.Get(context.Background(), info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusPending, got.Status, "released, not failed")
		require.Equal(t, 0, got.Attempt)
		next, err := r.Submit(context.Background(), "wait", 0)
		require.NoError(t, err, "intake stays open until Shutdown")
		synctest.Wait()
		got, err = r.Get(context.Background(), next.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusPending, got.Status, "but no worker claims it")
		var se *taskqueue.ShutdownError
		require.ErrorAs(t, r.Shutdown(context.Background()), &se)
		require.Equal(t, &taskqueue.ShutdownError{Pending: 2, Interrupted: 1}, se)
	})
}

func TestPollIntervalSeesChangesMadeElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		submitter, err := taskqueue.New(taskqueue.Options{Store: store})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(submitter, "job", double))
		// The watcher runs other kinds only, so the job stays pending until
		// "another process" (direct store calls) cancels it.
		watcher, err := taskqueue.New(taskqueue.Options{Store: store, PollInterval: time.Second})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(watcher, "unrelated", double))
		require.NoError(t, watcher.Start(ctx))
		info, err := submitter.Submit(ctx, "job", args{N: 1})
		require.NoError(t, err)

		waited := make(chan taskqueue.Info, 1)
		go func() {
			done, err := watcher.Wait(ctx, info.ID)
			if err == nil {
				waited <- done
			}
		}()
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		_, err = store.Cancel(ctx, info.ID)
		require.NoError(t, err)
		done := <-waited
		require.Equal(t, taskqueue.StatusCanceled, done.Status)
		require.True(t, start.Add(500*time.Millisecond).Equal(time.Now()), "seen at the next poll")
		require.NoError(t, watcher.Shutdown(ctx))
		require.NoError(t, submitter.Shutdown(ctx))
	})
}

// A subscriber fed by polls and by the Runner's own writes receives each
// state once, in Version order: a poll that finds nothing new sends
// nothing, and no state comes after a newer one.
func TestSubscribeSendsEachVersionOnceInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		r := newRunner(t, taskqueue.Options{PollInterval: 10 * time.Millisecond, ProgressInterval: time.Nanosecond})
		step := make(chan struct{})
		require.NoError(t, taskqueue.Handle(r, "steps", func(ctx context.Context, job *taskqueue.Job, _ args) (int, error) {
			for i := 1; i <= 5; i++ {
				<-step
				time.Sleep(25 * time.Millisecond) // polls come and go between the steps
				if err := job.Progress(i*20, ""); err != nil {
					return 0, err
				}
			}
			return 0, nil
		}))
		info, err := r.Submit(ctx, "steps", args{})
		require.NoError(t, err)
		ch, err := r.Subscribe(ctx, info.ID)
		require.NoError(t, err)
		// The channel keeps only the latest Info: the pending one is read
		// before the Runner starts, or a claim could replace it unread.
		first := <-ch
		versions := []int64{first.Version}
		require.NoError(t, r.Start(ctx))
		for got := range ch {
			versions = append(versions, got.Version)
			// The handler may still be on its way back from Progress:
			// once every goroutine of the bubble is blocked, it waits on
			// step, and the step cannot be lost.
			synctest.Wait()
			if got.Status == taskqueue.StatusRunning && got.Progress.Percent < 100 {
				select {
				case step <- struct{}{}:
				default:
				}
			}
		}
		require.Equal(t, []int64{1, 2, 3, 4, 5, 6, 7, 8}, versions)
	})
}

func TestPollIntervalIsValidated(t *testing.T) {
	for _, d := range []time.Duration{-1, time.Millisecond} {
		_, err := taskqueue.New(taskqueue.Options{PollInterval: d})
		require.Error(t, err, "PollInterval %v", d)
	}
}

func TestManyConcurrentWaitersAllSeeTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		r, err := taskqueue.New(taskqueue.Options{Workers: 4, ProgressInterval: time.Millisecond})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "steps", func(ctx context.Context, job *taskqueue.Job, n int) (int, error) {
			for i := range 10 {
				time.Sleep(time.Millisecond)
				if err := job.Progress(i*10, ""); err != nil {
					return 0, err
				}
			}
			if n%3 == 0 {
				return 0, taskqueue.Permanent(errors.New("no"))
			}
			return n, nil
		}))
		require.NoError(t, r.Start(ctx))
		const tasks, waiters = 100, 5
		results := make(chan taskqueue.Info, tasks*waiters)
		gaveUp := make(chan error, tasks)
		for i := range tasks {
			info, err := r.Submit(ctx, "steps", i)
			require.NoError(t, err)
			for range waiters {
				go func() {
					done, err := r.Wait(ctx, info.ID)
					if err == nil {
						results <- done
					}
				}()
			}
			go func() { // an impatient one
				wctx, cancel := context.WithTimeout(ctx, time.Millisecond)
				defer cancel()
				_, err := r.Wait(wctx, info.ID)
				gaveUp <- err
			}()
			if i%10 == 0 {
				require.NoError(t, r.Cancel(ctx, info.ID))
			}
		}
		counts := map[taskqueue.Status]int{}
		for range tasks * waiters {
			counts[(<-results).Status]++
		}
		require.Equal(t, map[taskqueue.Status]int{
			taskqueue.StatusSucceeded: 60 * waiters,
			taskqueue.StatusFailed:    30 * waiters,
			taskqueue.StatusCanceled:  10 * waiters,
		}, counts)
		for range tasks {
			err := <-gaveUp
			if err != nil {
				require.ErrorIs(t, err, context.DeadlineExceeded)
			}
		}
		require.NoError(t, r.Shutdown(ctx))
	})
}

// slowBeatStore is a leasing MemoryStore whose Heartbeat blocks until its
// ctx ends, as a call to an unreachable database does.
type slowBeatStore struct {
	*taskqueue.MemoryStore
	entered  chan struct{}
	inFlight atomic.Int32
	ctxEnded atomic.Int32
}

func (s *slowBeatStore) Claim(ctx context.Context, kinds []string) (taskqueue.Task, error) {
	t, err := s.MemoryStore.Claim(ctx, kinds)
	if err == nil {
		t.LeaseUntil = time.Now().Add(30 * time.Second)
	}
	return t, err
}

func (s *slowBeatStore) Heartbeat(ctx context.Context, id string, claim int64) (bool, error) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	s.entered <- struct{}{}
	<-ctx.Done()
	s.ctxEnded.Add(1)
	return false, ctx.Err()
}

func TestHeartbeatInFlightDoesNotOutliveItsAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		store := &slowBeatStore{MemoryStore: mem, entered: make(chan struct{}, 1)}
		r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: 1})
		require.NoError(t, err)
		finish := make(chan struct{})
		require.NoError(t, taskqueue.Handle(r, "job", func(ctx context.Context, job *taskqueue.Job, _ int) (int, error) {
			<-finish
			return 1, nil
		}))
		require.NoError(t, r.Start(context.Background()))
		info, err := r.Submit(context.Background(), "job", 0)
		require.NoError(t, err)
		<-store.entered // the first heartbeat, at 10s, is stuck in the store
		close(finish)
		done, err := r.Wait(context.Background(), info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusSucceeded, done.Status)
		require.NoError(t, r.Shutdown(context.Background()))
		require.Zero(t, store.inFlight.Load(), "no heartbeat is still in the store once Shutdown returns")
		require.Equal(t, int32(1), store.ctxEnded.Load(), "the attempt's end cancelled the heartbeat's ctx")
	})
}

func TestShutdownDoesNotCountACanceledTaskAsInterrupted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		finished := make(chan taskqueue.Info, 1)
		r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: 1, OnFinish: func(info taskqueue.Info) { finished <- info }})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "wait", func(ctx context.Context, job *taskqueue.Job, _ int) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}))
		require.NoError(t, r.Start(context.Background()))
		info, err := r.Submit(context.Background(), "wait", 0)
		require.NoError(t, err)
		synctest.Wait()
		// Cancelled by another process sharing the store: this Runner's
		// handler goes on until Shutdown's deadline interrupts it.
		_, err = store.Cancel(context.Background(), info.ID)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var se *taskqueue.ShutdownError
		require.ErrorAs(t, r.Shutdown(ctx), &se)
		require.Equal(t, &taskqueue.ShutdownError{Err: context.DeadlineExceeded}, se,
			"the task ended canceled: nothing pending, nothing interrupted")
		require.Equal(t, taskqueue.StatusCanceled, (<-finished).Status)
	})
}

// wrappedStore is a MemoryStore the Runner does not recognise as one, so
// that it records attempts as it does over a store on the network.
type wrappedStore struct{ *taskqueue.MemoryStore }

func TestHandlerGoexitIsAFailedAttemptAndTheWorkerLivesOn(t *testing.T) {
	for _, name := range []string{"memory store", "store recorded on a goroutine"} {
		t.Run(name, func(t *testing.T) { testHandlerGoexit(t, name != "memory store") })
	}
}

func testHandlerGoexit(t *testing.T, wrapped bool) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		var store taskqueue.Store = mem
		if wrapped {
			store = wrappedStore{mem}
		}
		r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: 1, MaxAttempts: 2, Backoff: func(int) time.Duration { return time.Second }})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "exits", func(ctx context.Context, job *taskqueue.Job, _ int) (int, error) {
			if job.Attempt() == 1 {
				runtime.Goexit() // as t.FailNow does in a test's handler
			}
			return 2, nil
		}))
		require.NoError(t, r.Start(context.Background()))
		info, err := r.Submit(context.Background(), "exits", 0)
		require.NoError(t, err)
		synctest.Wait()
		between, err := r.Get(context.Background(), info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusPending, between.Status, "a failed attempt, retried")
		require.Equal(t, "taskqueue: handler called runtime.Goexit", between.Error)
		done, err := r.Wait(context.Background(), info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusSucceeded, done.Status, "the one worker was replaced and ran the retry")
		require.Equal(t, 2, done.Attempt)
		require.NoError(t, r.Shutdown(context.Background()))
	})
}

// vanishingStore is a MemoryStore that loses its tasks after the first
// read of them, as when a task finishes and Retention sweeps it away in
// between Subscribe's two reads.
type vanishingStore struct {
	*taskqueue.MemoryStore
	reads atomic.Int32
}

func (s *vanishingStore) Get(ctx context.Context, id string) (taskqueue.Info, error) {
	if s.reads.Add(1) > 1 {
		return taskqueue.Info{}, taskqueue.ErrNotFound
	}
	return s.MemoryStore.Get(ctx, id)
}

// pausingStore holds the second read of a task after it is armed (the
// first is Subscribe's first read, the second its re-read): it reads the
// store, then waits for release before answering, so that an update can
// be published in between.
type pausingStore struct {
	*taskqueue.MemoryStore
	armed   atomic.Bool
	reads   atomic.Int32
	read    chan struct{} // closed when the held read has read the store
	release chan struct{}
}

func (s *pausingStore) Get(ctx context.Context, id string) (taskqueue.Info, error) {
	info, err := s.MemoryStore.Get(ctx, id)
	if s.armed.Load() && s.reads.Add(1) == 2 {
		close(s.read)
		<-s.release
	}
	return info, err
}

func TestSubscribeEdges(t *testing.T) {
	t.Run("a task gone by the second read closes the channel rather than leaving it open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
			require.NoError(t, err)
			r, err := taskqueue.New(taskqueue.Options{Store: &vanishingStore{MemoryStore: mem}})
			require.NoError(t, err)
			require.NoError(t, taskqueue.Handle(r, "double", double))
			info, err := r.Submit(context.Background(), "double", args{})
			require.NoError(t, err)
			ch, err := r.Subscribe(context.Background(), info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusPending, (<-ch).Status)
			synctest.Wait()
			_, open := <-ch
			require.False(t, open)
			var se *taskqueue.ShutdownError
			require.ErrorAs(t, r.Shutdown(context.Background()), &se)
		})
	})

	t.Run("an update published during the second read is not replaced by that older read", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
			require.NoError(t, err)
			store := &pausingStore{MemoryStore: mem, read: make(chan struct{}), release: make(chan struct{})}
			r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: 1})
			require.NoError(t, err)
			step := make(chan int)
			require.NoError(t, taskqueue.Handle(r, "steps", func(ctx context.Context, job *taskqueue.Job, _ args) (int, error) {
				for p := range step {
					if err := job.Progress(p, ""); err != nil {
						return 0, err
					}
				}
				return 0, nil
			}))
			require.NoError(t, r.Start(context.Background()))
			info, err := r.Submit(context.Background(), "steps", args{})
			require.NoError(t, err)
			step <- 10
			synctest.Wait()

			store.armed.Store(true)
			subscribed := make(chan (<-chan taskqueue.Info))
			go func() {
				ch, err := r.Subscribe(context.Background(), info.ID)
				if err != nil {
					panic(err)
				}
				subscribed <- ch
			}()
			<-store.read            // Subscribe is registered, and its second read has read progress 10
			time.Sleep(time.Second) // past ProgressInterval: the next progress is written at once
			step <- 50              // published to the subscription while the second read is held
			synctest.Wait()
			close(store.release)
			ch := <-subscribed
			got := <-ch
			require.Equal(t, 50, got.Progress.Percent, "the older second read replaced the newer update")
			close(step)
			require.NoError(t, r.Shutdown(context.Background()))
		})
	})

	t.Run("a ctx already ended gives the current Info, then a closed channel", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRunner(t, taskqueue.Options{})
			info, err := r.Submit(context.Background(), "double", args{})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			ch, err := r.Subscribe(ctx, info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusPending, (<-ch).Status)
			_, open := <-ch
			require.False(t, open)
			last, err := r.Wait(ctx, info.ID)
			require.ErrorIs(t, err, context.Canceled)
			require.Equal(t, info.ID, last.ID)
		})
	})

	t.Run("subscriptions past MaxSubscriptions are ErrTooManySubscriptions, and ending one frees a place", func(t *testing.T) {
		r := newRunner(t, taskqueue.Options{})
		info, err := r.Submit(context.Background(), "double", args{})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for range taskqueue.MaxSubscriptions - 1 {
			_, err := r.Subscribe(ctx, info.ID)
			require.NoError(t, err)
		}
		lastCtx, cancelLast := context.WithCancel(context.Background())
		last, err := r.Subscribe(lastCtx, info.ID)
		require.NoError(t, err)
		_, err = r.Subscribe(context.Background(), info.ID)
		require.ErrorIs(t, err, taskqueue.ErrTooManySubscriptions)
		cancelLast()
		for range last { // closed once its ctx ended, and its place freed
		}
		_, err = r.Subscribe(ctx, info.ID)
		require.NoError(t, err)
	})
}

func TestMemoryStoreBoundsFinishedTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{MaxFinished: 3})
		require.NoError(t, err)
		r, err := taskqueue.New(taskqueue.Options{Store: store, Retention: time.Hour})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "double", double))
		require.NoError(t, r.Start(ctx))
		var ids []string
		for i := range 5 {
			info, err := r.Submit(ctx, "double", args{N: i})
			require.NoError(t, err)
			_, err = r.Wait(ctx, info.ID)
			require.NoError(t, err)
			ids = append(ids, info.ID)
			time.Sleep(time.Second)
		}
		for i, id := range ids {
			_, err := r.Get(ctx, id)
			if i < 2 {
				require.ErrorIs(t, err, taskqueue.ErrNotFound, "task %d: the oldest finished go first, before Retention", i)
			} else {
				require.NoError(t, err, "task %d", i)
			}
		}
		st, err := r.Stats(ctx)
		require.NoError(t, err)
		require.Equal(t, taskqueue.Stats{Succeeded: 3}, st)
		require.NoError(t, r.Shutdown(ctx))
	})
	for _, bad := range []int{-1, 1<<30 + 1} {
		_, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{MaxFinished: bad})
		require.Error(t, err, "MaxFinished %d", bad)
	}
}

func TestShutdownWithAnEndedCtxOnAnIdleRunnerIsClean(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := taskqueue.New(taskqueue.Options{Workers: 4})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "double", double))
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, r.Start(ctx))
		info, err := r.Submit(ctx, "double", args{N: 1})
		require.NoError(t, err)
		_, err = r.Wait(ctx, info.ID)
		require.NoError(t, err)
		cancel() // as a service does on SIGTERM, then shuts down with the same ctx
		require.NoError(t, r.Shutdown(ctx), "nothing was running, so nothing was cut short")
	})
}

func TestBackoffPanicIsContained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := taskqueue.New(taskqueue.Options{MaxAttempts: 2, Backoff: func(int) time.Duration { panic("bad backoff") }})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "flaky", func(ctx context.Context, job *taskqueue.Job, _ int) (int, error) {
			if job.Attempt() == 1 {
				return 0, errors.New("again")
			}
			return 1, nil
		}))
		require.NoError(t, r.Start(context.Background()))
		start := time.Now()
		info, err := r.Submit(context.Background(), "flaky", 0)
		require.NoError(t, err)
		done, err := r.Wait(context.Background(), info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusSucceeded, done.Status, "retried as by DefaultBackoff")
		require.Equal(t, 2, done.Attempt)
		wait := done.StartedAt.Sub(start)
		require.True(t, wait >= 500*time.Millisecond && wait <= time.Second, "DefaultBackoff's first delay, got %v", wait)
		require.NoError(t, r.Shutdown(context.Background()))
	})
}

func TestCancelConcurrentWithStartIsRaceFree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		store, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		newR := func() *taskqueue.Runner {
			r, err := taskqueue.New(taskqueue.Options{Store: store})
			require.NoError(t, err)
			require.NoError(t, taskqueue.Handle(r, "wait", func(ctx context.Context, _ *taskqueue.Job, _ int) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			}))
			return r
		}
		running := newR()
		require.NoError(t, running.Start(ctx))
		info, err := running.Submit(ctx, "wait", 0)
		require.NoError(t, err)
		synctest.Wait()

		// A second process's Runner starting up while a caller cancels, through
		// it, the task the first one runs.
		starting := newR()
		started := make(chan error)
		go func() { started <- starting.Start(ctx) }()
		require.NoError(t, starting.Cancel(ctx, info.ID))
		require.NoError(t, <-started)
		require.NoError(t, starting.Shutdown(ctx))
		// A MemoryStore carries no cancel to the Runner running the task:
		// its handler runs on until that Runner's Shutdown interrupts it,
		// and the release turns into the recorded cancel.
		deadline, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var se *taskqueue.ShutdownError
		require.ErrorAs(t, running.Shutdown(deadline), &se)
		require.Equal(t, &taskqueue.ShutdownError{Err: context.DeadlineExceeded}, se)
		done, err := running.Get(ctx, info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusCanceled, done.Status)
	})
}

func TestSubscribeConcurrentWithStartIsRaceFree(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		r := newRunner(t, taskqueue.Options{})
		info, err := r.Submit(ctx, "double", args{N: 2})
		require.NoError(t, err)
		started := make(chan error)
		go func() { started <- r.Start(ctx) }()
		done, err := r.Wait(ctx, info.ID)
		require.NoError(t, err)
		require.JSONEq(t, "4", string(done.Result))
		require.NoError(t, <-started)
	})
}

// notifyingStore is a MemoryStore that tells every Runner using it of
// cancel requests, as a store shared by several processes does.
type notifyingStore struct {
	*taskqueue.MemoryStore
	mu   sync.Mutex
	fns  map[int]func(string)
	next int
}

func (s *notifyingStore) Cancel(ctx context.Context, id string) (taskqueue.Info, error) {
	info, err := s.MemoryStore.Cancel(ctx, id)
	if err == nil && info.Status == taskqueue.StatusRunning {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, fn := range s.fns {
			fn(id)
		}
	}
	return info, err
}

func (s *notifyingStore) NotifyCancel(fn func(string)) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	key := s.next
	s.fns[key] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.fns, key)
	}
}

func (s *notifyingStore) watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fns)
}

func TestCancelNotifierInterruptsAHandlerOnAnotherRunnerAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		store := &notifyingStore{MemoryStore: mem, fns: map[int]func(string){}}
		causes := make(chan error, 1)
		running, err := taskqueue.New(taskqueue.Options{Store: store, Workers: 1})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(running, "wait", func(ctx context.Context, _ *taskqueue.Job, _ int) (int, error) {
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return 0, ctx.Err()
		}))
		// The other Runner runs other kinds only: it is where a caller
		// cancels a task that another process runs.
		other, err := taskqueue.New(taskqueue.Options{Store: store})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(other, "unrelated", double))
		require.NoError(t, running.Start(ctx))
		require.NoError(t, other.Start(ctx))
		require.Equal(t, 2, store.watchers(), "each started Runner watches")

		info, err := running.Submit(ctx, "wait", 0)
		require.NoError(t, err)
		synctest.Wait()
		start := time.Now()
		require.NoError(t, other.Cancel(ctx, info.ID))
		require.ErrorIs(t, <-causes, taskqueue.ErrCanceled)
		done, err := running.Wait(ctx, info.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusCanceled, done.Status)
		require.True(t, start.Equal(time.Now()), "at once, with no heartbeat in between")

		require.NoError(t, other.Shutdown(ctx))
		require.NoError(t, running.Shutdown(ctx))
		require.Zero(t, store.watchers(), "Shutdown stops watching")
	})
}

// gatedStore is a MemoryStore whose Finish waits, once it has been
// entered, until the test lets it through: an attempt's outcome on its
// way to a slow database.
type gatedStore struct {
	*taskqueue.MemoryStore
	entered chan string
	release chan struct{}
}

func (s *gatedStore) Finish(ctx context.Context, id string, claim int64, o taskqueue.Outcome) (taskqueue.Info, error) {
	s.entered <- id
	<-s.release
	return s.MemoryStore.Finish(ctx, id, claim, o)
}

// Over a store that is not a MemoryStore, a worker claims and runs its
// next task while the store still records the last one, but it never has
// two recordings outstanding, and Shutdown waits for the one it has.
func TestWorkerRunsTheNextTaskWhileTheLastIsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		store := &gatedStore{MemoryStore: mem, entered: make(chan string, 10), release: make(chan struct{})}
		var finished atomic.Int32
		r, err := taskqueue.New(taskqueue.Options{Store: store, Workers: 1, OnFinish: func(taskqueue.Info) { finished.Add(1) }})
		require.NoError(t, err)
		started := make(chan int, 10)
		require.NoError(t, taskqueue.Handle(r, "job", func(_ context.Context, _ *taskqueue.Job, n int) (int, error) {
			started <- n
			return n, nil
		}))
		for n := range 3 {
			_, err := r.Submit(context.Background(), "job", n)
			require.NoError(t, err)
		}
		require.NoError(t, r.Start(context.Background()))
		synctest.Wait()
		require.Len(t, started, 2, "the second task ran while the first's Finish was held, and the third did not")
		require.Len(t, store.entered, 1, "the second's Finish waits for the first's")
		require.Zero(t, finished.Load())

		shut := make(chan error, 1)
		go func() { shut <- r.Shutdown(context.Background()) }()
		synctest.Wait()
		require.Empty(t, shut, "Shutdown waits for the recording in flight")
		close(store.release)
		var se *taskqueue.ShutdownError
		require.ErrorAs(t, <-shut, &se)
		require.Equal(t, &taskqueue.ShutdownError{Pending: 1}, se, "the third task is left pending")
		require.Equal(t, int32(2), finished.Load(), "both recordings were made before Shutdown returned")
		require.Len(t, started, 2, "the third task was never claimed after Shutdown")
	})
}
