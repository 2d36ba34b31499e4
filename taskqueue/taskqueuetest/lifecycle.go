package taskqueuetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func init() {
	register(
		behaviour{"submit returns a pending task that Get finds", submitGet},
		behaviour{"unknown and malformed ids are ErrNotFound, not pending", notFound},
		behaviour{"a task runs to success with its result and timestamps", runsToSuccess},
		behaviour{"a payload that does not decode fails at once without retries", badPayload},
		behaviour{"payloads and Infos are copies: changing the caller's bytes changes no task", copiesNotAliases},
		behaviour{"errors retry with the backoff's delays until MaxAttempts, then fail with the last error", retriesWithBackoff},
		behaviour{"a permanent error skips the retries", permanentError},
		behaviour{"a panic is a failed attempt with its value and stack", panicIsFailedAttempt},
		behaviour{"a timeout is a failed attempt with a clear message", timeoutIsFailedAttempt},
		behaviour{"huge errors and panics are cut to MaxErrorMessage and stored whole", errorsAreBounded},
		behaviour{"a delayed task runs exactly when due, and due tasks run in due order", delayedTasks},
		behaviour{"a unique key returns the live task, and is free again once it finishes", uniqueKey},
		behaviour{"progress is recorded, validated and coalesced per interval", progress},
		behaviour{"every task runs exactly once across many workers", exactlyOnce},
		behaviour{"Runners sharing a store each run only their own kinds", sharedKinds},
		behaviour{"Runners of one kind sharing a store run each task exactly once", sharedClaims},
		behaviour{"a unique key holds under concurrent submits from several Runners, through retries, until the task ends", uniqueKeyRaces},
	)
}

func submitGet(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{MaxAttempts: 4}, func(r *taskqueue.Runner) { handle(t, r, "double", double) })
	start := time.Now()
	info := b.submit("double", Payload{N: 21})
	require.NotEmpty(t, info.ID)
	require.Equal(t, "double", info.Kind)
	require.Equal(t, taskqueue.StatusPending, info.Status)
	require.Equal(t, 0, info.Attempt)
	require.Equal(t, 4, info.MaxAttempts)
	requireTime(t, start, info.CreatedAt, "CreatedAt")
	requireTime(t, start, info.RunAt, "RunAt")
	require.True(t, info.StartedAt.IsZero())
	require.True(t, info.FinishedAt.IsZero())

	got := b.get(info.ID)
	require.Equal(t, info.ID, got.ID)
	require.Equal(t, taskqueue.StatusPending, got.Status)

	other := b.submit("double", Payload{N: 1}, taskqueue.MaxAttempts(7))
	require.NotEqual(t, info.ID, other.ID)
	require.Equal(t, 7, other.MaxAttempts)

	st, err := b.r.Stats(context.Background())
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Pending: 2}, st)
}

func notFound(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) { handle(t, r, "double", double) })
	info := b.submit("double", Payload{N: 1})
	// A well-formed id that was never issued: the last digit changed.
	last := info.ID[len(info.ID)-1]
	other := info.ID[:len(info.ID)-1] + map[bool]string{true: "1", false: "0"}[last == '0']
	for _, id := range []string{other, "", "nope", strings.Repeat("z", 10_000), info.ID + "0"} {
		_, err := b.r.Get(context.Background(), id)
		require.ErrorIs(t, err, taskqueue.ErrNotFound, "Get(%.30q)", id)
		require.ErrorIs(t, b.r.Cancel(context.Background(), id), taskqueue.ErrNotFound, "Cancel(%.30q)", id)
		_, err = b.r.Wait(context.Background(), id)
		require.ErrorIs(t, err, taskqueue.ErrNotFound, "Wait(%.30q)", id)
		_, err = b.r.Subscribe(context.Background(), id)
		require.ErrorIs(t, err, taskqueue.ErrNotFound, "Subscribe(%.30q)", id)
	}
}

func runsToSuccess(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "slow", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			time.Sleep(3 * time.Second)
			return Result{Double: 2 * p.N}, nil
		})
	}).start()
	start := time.Now()
	info := b.submit("slow", Payload{N: 21})
	done := b.wait(info.ID)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
	require.JSONEq(t, `{"double":42}`, string(done.Result))
	require.Empty(t, done.Error)
	require.Equal(t, 1, done.Attempt)
	requireTime(t, start, done.StartedAt, "StartedAt")
	requireTime(t, start.Add(3*time.Second), done.FinishedAt, "FinishedAt")
	require.Equal(t, done, b.get(info.ID))
	require.Equal(t, done.ID, (<-b.finished).ID, "OnFinish is called with the task")

	// Info is JSON-friendly: the result is embedded, the status is a name.
	raw, err := json.Marshal(done)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"status":"succeeded"`)
	require.Contains(t, string(raw), `"result":{"double":42}`)
	var back taskqueue.Info
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Equal(t, done.Status, back.Status)
}

func badPayload(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	var calls atomic.Int32
	b := newBundle(t, newStore, taskqueue.Options{MaxAttempts: 5}, func(r *taskqueue.Runner) {
		handle(t, r, "double", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			calls.Add(1)
			return Result{}, nil
		})
	}).start()
	info := b.submit("double", json.RawMessage(`{"n":"not a number"}`))
	done := b.wait(info.ID)
	require.Equal(t, taskqueue.StatusFailed, done.Status)
	require.Equal(t, 1, done.Attempt)
	require.Contains(t, done.Error, "does not decode")
	require.Zero(t, calls.Load(), "the handler never sees a bad payload")
}

func copiesNotAliases(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) { handle(t, r, "double", double) })
	// A caller that reuses its buffer for the next payload.
	buf := []byte(`{"n":21}`)
	info := b.submit("double", json.RawMessage(buf))
	copy(buf, `{"n":99}`)
	b.start()
	done := b.wait(info.ID)
	require.JSONEq(t, `{"double":42}`, string(done.Result), "the task ran on the payload as submitted")

	done.Result[2] = 'X'
	for _, got := range []taskqueue.Info{b.get(info.ID), listOne(t, b, info.ID)} {
		require.JSONEq(t, `{"double":42}`, string(got.Result), "a caller's change to a returned Info reaches no other caller")
		got.Result[2] = 'Y'
	}
	require.JSONEq(t, `{"double":42}`, string(b.get(info.ID).Result))
}

// listOne returns the listed Info of id.
func listOne(t *testing.T, b *bundle, id string) taskqueue.Info {
	t.Helper()
	page, err := b.r.List(context.Background(), taskqueue.Filter{}, "", 1000)
	require.NoError(t, err)
	for _, it := range page.Items {
		if it.ID == id {
			return it
		}
	}
	t.Fatalf("task %s not listed", id)
	return taskqueue.Info{}
}

func retriesWithBackoff(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	var starts []time.Time
	b := newBundle(t, newStore, taskqueue.Options{
		MaxAttempts: 3,
		Backoff:     func(attempt int) time.Duration { return time.Duration(attempt) * 10 * time.Second },
	}, func(r *taskqueue.Runner) {
		handle(t, r, "flaky", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			starts = append(starts, time.Now()) // one worker at a time: attempts are sequential
			return Result{}, fmt.Errorf("attempt %d: %w", job.Attempt(), errBoom)
		})
	}).start()
	start := time.Now()
	info := b.submit("flaky", Payload{})

	time.Sleep(time.Second)
	mid := b.get(info.ID)
	require.Equal(t, taskqueue.StatusPending, mid.Status, "waiting to retry")
	require.Equal(t, 1, mid.Attempt)
	require.Equal(t, "attempt 1: boom", mid.Error)
	requireTime(t, start.Add(10*time.Second), mid.RunAt, "RunAt of the retry")

	done := b.wait(info.ID)
	require.Equal(t, taskqueue.StatusFailed, done.Status)
	require.Equal(t, 3, done.Attempt)
	require.Equal(t, "attempt 3: boom", done.Error)
	require.Len(t, starts, 3)
	requireTime(t, start, starts[0], "attempt 1")
	requireTime(t, start.Add(10*time.Second), starts[1], "attempt 2")
	requireTime(t, start.Add(30*time.Second), starts[2], "attempt 3")
}

func permanentError(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{MaxAttempts: 5}, func(r *taskqueue.Runner) {
		handle(t, r, "bad", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			return Result{}, taskqueue.Permanent(fmt.Errorf("invalid input: %w", errBoom))
		})
	}).start()
	done := b.wait(b.submit("bad", Payload{}).ID)
	require.Equal(t, taskqueue.StatusFailed, done.Status)
	require.Equal(t, 1, done.Attempt)
	require.Equal(t, "invalid input: boom", done.Error)
}

func panicIsFailedAttempt(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{MaxAttempts: 2, Backoff: func(int) time.Duration { return time.Second }}, func(r *taskqueue.Runner) {
		handle(t, r, "panics", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			if job.Attempt() == 1 {
				panic("first attempt explodes")
			}
			return Result{Double: 2}, nil
		})
		handle(t, r, "always", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			panic(fmt.Sprintf("attempt %d explodes", job.Attempt()))
		})
	}).start()
	first := b.submit("panics", Payload{})
	always := b.submit("always", Payload{})

	synctest.Wait()
	between := b.get(first.ID)
	require.Equal(t, taskqueue.StatusPending, between.Status, "a panic is retried like an error")
	require.Contains(t, between.Error, "taskqueue: handler panicked: first attempt explodes")
	recovered := b.wait(first.ID)
	require.Equal(t, taskqueue.StatusSucceeded, recovered.Status)
	require.Equal(t, 2, recovered.Attempt)
	require.Empty(t, recovered.Error, "success clears the last error")

	failed := b.wait(always.ID)
	require.Equal(t, taskqueue.StatusFailed, failed.Status)
	require.Equal(t, 2, failed.Attempt)
	require.Contains(t, failed.Error, "panicked: attempt 2 explodes")
	require.Contains(t, failed.Error, "goroutine ", "the stack is recorded")
	require.Contains(t, failed.Error, "taskqueuetest.panicIsFailedAttempt", "the stack names the handler")
}

func timeoutIsFailedAttempt(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := newBundle(t, newStore, taskqueue.Options{MaxAttempts: 2, Timeout: 5 * time.Second, Backoff: func(int) time.Duration { return 0 }}, func(r *taskqueue.Runner) {
		handle(t, r, "stuck", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			<-ctx.Done()
			return Result{}, ctx.Err()
		})
	}).start()
	start := time.Now()
	byDefault := b.submit("stuck", Payload{})
	done := b.wait(byDefault.ID)
	require.Equal(t, taskqueue.StatusFailed, done.Status)
	require.Equal(t, 2, done.Attempt)
	require.Equal(t, "taskqueue: attempt 2 timed out after 5s: context deadline exceeded", done.Error)
	requireTime(t, start.Add(10*time.Second), done.FinishedAt, "two attempts of 5s")

	start = time.Now()
	own := b.submit("stuck", Payload{}, taskqueue.Timeout(time.Second), taskqueue.MaxAttempts(1))
	done = b.wait(own.ID)
	require.Equal(t, "taskqueue: attempt 1 timed out after 1s: context deadline exceeded", done.Error)
	requireTime(t, start.Add(time.Second), done.FinishedAt, "the task's own Timeout")
}

func errorsAreBounded(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	huge := strings.Repeat("é", 1<<20) // 2 MiB of two-byte runes: a cut must not split one
	var deep func(n int) int
	deep = func(n int) int {
		if n == 0 {
			panic("deep")
		}
		return deep(n-1) + 1
	}
	b := newBundle(t, newStore, taskqueue.Options{MaxAttempts: 1}, func(r *taskqueue.Runner) {
		handle(t, r, "error", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			return Result{}, errors.New("start " + huge)
		})
		handle(t, r, "panic", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			panic("start " + huge)
		})
		handle(t, r, "deep", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			return Result{Double: deep(10_000)}, nil
		})
	}).start()
	for _, tc := range []struct {
		kind, prefix, contains string
		least                  int
	}{
		{"error", "start éé", "bytes cut]", taskqueue.MaxErrorMessage - 64},
		// The panic value is cut to a quarter, so that the stack still fits.
		{"panic", "taskqueue: handler panicked: start éé", "bytes cut]\n\ngoroutine ", taskqueue.MaxErrorMessage / 4},
		// The runtime elides the middle of a deep stack.
		{"deep", "taskqueue: handler panicked: deep\n\ngoroutine ", "frames elided", 4 << 10},
	} {
		done := b.wait(b.submit(tc.kind, Payload{}).ID)
		require.Equal(t, taskqueue.StatusFailed, done.Status, tc.kind)
		require.LessOrEqual(t, len(done.Error), taskqueue.MaxErrorMessage, tc.kind)
		require.Greater(t, len(done.Error), tc.least, "%s: the store kept the text whole", tc.kind)
		require.True(t, utf8.ValidString(done.Error), "%s: cut on a rune boundary", tc.kind)
		require.True(t, strings.HasPrefix(done.Error, tc.prefix), "%s: %.60q", tc.kind, done.Error)
		require.Contains(t, done.Error, tc.contains, tc.kind)
	}
}

func delayedTasks(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	ran := make(chan string, 10)
	b := newBundle(t, newStore, taskqueue.Options{Workers: 1}, func(r *taskqueue.Runner) {
		handle(t, r, "note", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			ran <- p.Text
			return Result{}, nil
		})
	}).start()
	start := time.Now()
	late := b.submit("note", Payload{Text: "late"}, taskqueue.Delay(time.Minute))
	requireTime(t, start.Add(time.Minute), late.RunAt, "RunAt from Delay")
	b.submit("note", Payload{Text: "at"}, taskqueue.RunAt(start.Add(30*time.Second)))
	b.submit("note", Payload{Text: "past"}, taskqueue.RunAt(start.Add(-time.Hour)))
	b.submit("note", Payload{Text: "soon"}, taskqueue.Delay(time.Second))

	require.Equal(t, "past", <-ran)
	requireTime(t, start, time.Now(), "a RunAt in the past runs at once")
	require.Equal(t, "soon", <-ran)
	requireTime(t, start.Add(time.Second), time.Now(), "Delay(1s)")
	require.Equal(t, "at", <-ran)
	requireTime(t, start.Add(30*time.Second), time.Now(), "RunAt(+30s)")
	time.Sleep(29 * time.Second)
	require.Equal(t, taskqueue.StatusPending, b.get(late.ID).Status, "not a moment early")
	require.Equal(t, "late", <-ran)
	requireTime(t, start.Add(time.Minute), time.Now(), "Delay(1m)")
}

func uniqueKey(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	release := make(chan struct{})
	b := newBundle(t, newStore, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "held", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			<-release
			return Result{Double: 2 * p.N}, nil
		})
	})
	first := b.submit("held", Payload{N: 1}, taskqueue.UniqueKey("img-42"))
	require.Equal(t, "img-42", first.UniqueKey)
	again := b.submit("held", Payload{N: 2}, taskqueue.UniqueKey("img-42"))
	require.Equal(t, first.ID, again.ID, "pending: the same task")
	otherKey := b.submit("held", Payload{N: 3}, taskqueue.UniqueKey("img-43"))
	require.NotEqual(t, first.ID, otherKey.ID)

	b.start()
	synctestWaitStatus(t, b, first.ID, taskqueue.StatusRunning)
	running := b.submit("held", Payload{N: 4}, taskqueue.UniqueKey("img-42"))
	require.Equal(t, first.ID, running.ID, "running: the same task")

	close(release)
	require.JSONEq(t, `{"double":2}`, string(b.wait(first.ID).Result), "the first payload won")
	fresh := b.submit("held", Payload{N: 5}, taskqueue.UniqueKey("img-42"))
	require.NotEqual(t, first.ID, fresh.ID, "finished: the key is free")
	require.JSONEq(t, `{"double":10}`, string(b.wait(fresh.ID).Result))
}

// synctestWaitStatus polls with the bubble's clock until id has status.
func synctestWaitStatus(t *testing.T, b *bundle, id string, want taskqueue.Status) {
	t.Helper()
	for range 1000 {
		if b.get(id).Status == want {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("task %s never reached %s (is %s)", id, want, b.get(id).Status)
}

func progress(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	steps := make(chan int)
	acks := make(chan error)
	b := newBundle(t, newStore, taskqueue.Options{ProgressInterval: time.Second}, func(r *taskqueue.Runner) {
		handle(t, r, "steps", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			for pct := range steps {
				acks <- job.Progress(pct, fmt.Sprintf("step %d", pct))
			}
			return Result{}, nil
		})
		handle(t, r, "bounds", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			for _, bad := range []int{-1, 101} {
				if err := job.Progress(bad, "x"); err == nil {
					return Result{}, fmt.Errorf("progress %d accepted", bad)
				}
			}
			if err := job.Progress(50, strings.Repeat("m", taskqueue.MaxProgressMessage+1)); err == nil {
				return Result{}, fmt.Errorf("long message accepted")
			}
			if err := job.Progress(100, "done"); err != nil {
				return Result{}, err
			}
			return Result{}, nil
		})
	}).start()

	bounds := b.wait(b.submit("bounds", Payload{}).ID)
	require.Equal(t, taskqueue.StatusSucceeded, bounds.Status, bounds.Error)
	require.Equal(t, taskqueue.Progress{Percent: 100, Message: "done"}, bounds.Progress, "rejected values were not recorded")

	id := b.submit("steps", Payload{}).ID
	step := func(pct int) {
		t.Helper()
		steps <- pct
		require.NoError(t, <-acks)
		synctest.Wait()
	}
	stored := func() int { t.Helper(); return b.get(id).Progress.Percent }

	step(10)
	require.Equal(t, 10, stored(), "the first report is written at once")
	step(20)
	step(30)
	require.Equal(t, 10, stored(), "reports within the interval are coalesced")
	time.Sleep(time.Second)
	synctest.Wait()
	require.Equal(t, 30, stored(), "the latest is written when the interval is up")
	step(40)
	require.Equal(t, 30, stored(), "the interval restarts at each write")
	time.Sleep(2 * time.Second)
	synctest.Wait()
	require.Equal(t, 40, stored())
	step(50)
	require.Equal(t, 50, stored(), "a report after a quiet interval is written at once")
	step(60)
	require.Equal(t, 50, stored())
	close(steps)
	done := b.wait(id)
	require.Equal(t, taskqueue.Progress{Percent: 60, Message: "step 60"}, done.Progress, "the attempt's end writes the last report")
}

func exactlyOnce(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	const n = 500
	var runs [n]atomic.Int32
	b := newBundle(t, newStore, taskqueue.Options{Workers: 8, MaxAttempts: 3, Backoff: func(int) time.Duration { return time.Millisecond }}, func(r *taskqueue.Runner) {
		handle(t, r, "count", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			runs[p.N].Add(1)
			time.Sleep(time.Duration(p.N%7) * time.Millisecond)
			if p.N%5 == 0 && job.Attempt() == 1 {
				return Result{}, errBoom // retried once
			}
			return Result{Double: 2 * p.N}, nil
		})
	}).start()
	ids := make([]string, n)
	for i := range n {
		ids[i] = b.submit("count", Payload{N: i}).ID
	}
	for i, id := range ids {
		done := b.wait(id)
		require.Equal(t, taskqueue.StatusSucceeded, done.Status)
		want := 1
		if i%5 == 0 {
			want = 2
		}
		require.Equal(t, want, done.Attempt)
		require.Equal(t, int32(want), runs[i].Load(), "task %d ran once per attempt", i)
	}
	st, err := b.r.Stats(context.Background())
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Succeeded: n}, st)
}

func sharedKinds(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	store := newStore(t)
	same := func(*testing.T) taskqueue.Store { return store }
	var aRuns, bRuns atomic.Int32
	a := newBundle(t, same, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "a", func(ctx context.Context, job *taskqueue.Job, p Payload) (string, error) {
			aRuns.Add(1)
			return "ran a", nil
		})
	}).start()
	bb := newBundle(t, same, taskqueue.Options{}, func(r *taskqueue.Runner) {
		handle(t, r, "b", func(ctx context.Context, job *taskqueue.Job, p Payload) (string, error) {
			bRuns.Add(1)
			return "ran b", nil
		})
	}).start()
	var as, bs []string
	for range 20 {
		bs = append(bs, bb.submit("b", Payload{}).ID) // b's tasks queue ahead of a's
	}
	for range 20 {
		as = append(as, a.submit("a", Payload{}).ID)
	}
	for _, id := range as {
		require.JSONEq(t, `"ran a"`, string(a.wait(id).Result))
	}
	for _, id := range bs {
		require.JSONEq(t, `"ran b"`, string(bb.wait(id).Result))
	}
	require.Equal(t, int32(20), aRuns.Load())
	require.Equal(t, int32(20), bRuns.Load())
}

// twoRunners makes two Runners of the same kinds over one store, as two
// processes sharing a durable store are.
func twoRunners(t *testing.T, newStore func(*testing.T) taskqueue.Store, opts taskqueue.Options, register func(r *taskqueue.Runner)) (*bundle, *bundle) {
	store := newStore(t)
	same := func(*testing.T) taskqueue.Store { return store }
	return newBundle(t, same, opts, register), newBundle(t, same, opts, register)
}

func sharedClaims(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	const n = 300
	var runs [n]atomic.Int32
	var ranOn [2]atomic.Int32
	register := func(which int) func(r *taskqueue.Runner) {
		return func(r *taskqueue.Runner) {
			handle(t, r, "count", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
				runs[p.N].Add(1)
				ranOn[which].Add(1)
				time.Sleep(time.Duration(p.N%3) * time.Millisecond)
				return Result{Double: 2 * p.N}, nil
			})
		}
	}
	store := newStore(t)
	same := func(*testing.T) taskqueue.Store { return store }
	// PollInterval: a Runner's Wait sees tasks finished by the other.
	opts := taskqueue.Options{Workers: 4, PollInterval: time.Second}
	a := newBundle(t, same, opts, register(0)).start()
	bb := newBundle(t, same, opts, register(1)).start()
	ids := make([]string, n)
	for i := range n {
		submitter := a
		if i%2 == 1 {
			submitter = bb
		}
		ids[i] = submitter.submit("count", Payload{N: i}).ID
	}
	for i, id := range ids {
		require.Equal(t, taskqueue.StatusSucceeded, a.wait(id).Status)
		require.Equal(t, int32(1), runs[i].Load(), "task %d ran once", i)
	}
	require.Equal(t, int32(n), ranOn[0].Load()+ranOn[1].Load())
	require.NotZero(t, ranOn[0].Load(), "both Runners claimed work")
	require.NotZero(t, ranOn[1].Load(), "both Runners claimed work")
}

func uniqueKeyRaces(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	release := make(chan struct{})
	register := func(r *taskqueue.Runner) {
		handle(t, r, "keyed", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			if job.Attempt() == 1 {
				return Result{}, errBoom
			}
			<-release
			return Result{Double: 2 * p.N}, nil
		})
		handle(t, r, "other", double)
	}
	opts := taskqueue.Options{MaxAttempts: 2, PollInterval: time.Second, Backoff: func(int) time.Duration { return time.Minute }}
	a, bb := twoRunners(t, newStore, opts, register)

	// Many submits of one key at once, through both Runners: one task.
	const submits = 40
	got := make(chan string, submits)
	for i := range submits {
		go func() {
			r := a.r
			if i%2 == 1 {
				r = bb.r
			}
			info, err := r.Submit(context.Background(), "keyed", Payload{N: i}, taskqueue.UniqueKey("k"))
			if err != nil {
				t.Error(err)
				got <- ""
				return
			}
			got <- info.ID
		}()
	}
	var id string
	for range submits {
		g := <-got
		if id == "" {
			id = g
		}
		require.Equal(t, id, g, "every submit got the one task")
	}
	st, err := a.r.Stats(context.Background())
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{Pending: 1}, st)

	// A task waiting to retry still holds its key.
	a.start()
	bb.start()
	synctest.Wait()
	retrying := a.get(id)
	require.Equal(t, taskqueue.StatusPending, retrying.Status)
	require.Equal(t, 1, retrying.Attempt)
	require.Equal(t, id, bb.submit("keyed", Payload{}, taskqueue.UniqueKey("k")).ID, "held while waiting to retry")
	time.Sleep(time.Minute)
	synctest.Wait()
	require.Equal(t, taskqueue.StatusRunning, a.get(id).Status)
	require.Equal(t, id, bb.submit("keyed", Payload{}, taskqueue.UniqueKey("k")).ID, "held while the retry runs")
	close(release)
	require.Equal(t, taskqueue.StatusSucceeded, a.wait(id).Status)

	// A cancelled task frees its key too.
	next := a.submit("keyed", Payload{}, taskqueue.UniqueKey("k"), taskqueue.Delay(time.Hour))
	require.NotEqual(t, id, next.ID, "free once the task succeeded")
	require.NoError(t, bb.r.Cancel(context.Background(), next.ID))
	last := bb.submit("keyed", Payload{}, taskqueue.UniqueKey("k"), taskqueue.Delay(time.Hour))
	require.NotEqual(t, next.ID, last.ID, "free once the task was cancelled")

	// A key is unique within its kind: another kind's live task with the
	// same key is not this task.
	other := a.submit("other", Payload{}, taskqueue.UniqueKey("k"), taskqueue.Delay(time.Hour))
	require.NotEqual(t, last.ID, other.ID)
	require.Equal(t, "other", other.Kind)
	require.Equal(t, other.ID, bb.submit("other", Payload{}, taskqueue.UniqueKey("k")).ID)
	require.Equal(t, last.ID, a.submit("keyed", Payload{}, taskqueue.UniqueKey("k")).ID)
}
