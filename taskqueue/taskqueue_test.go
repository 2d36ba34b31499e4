package taskqueue_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/taskqueue"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type args struct {
	N int `json:"n"`
}

func double(_ context.Context, _ *taskqueue.Job, a args) (int, error) { return 2 * a.N, nil }

func newRunner(t *testing.T, opts taskqueue.Options) *taskqueue.Runner {
	t.Helper()
	r, err := taskqueue.New(opts)
	require.NoError(t, err)
	require.NoError(t, taskqueue.Handle(r, "double", double))
	t.Cleanup(func() { _ = r.Shutdown(context.Background()) })
	return r
}

func TestNewRejectsBadOptions(t *testing.T) {
	store, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		opts taskqueue.Options
	}{
		{"negative workers", taskqueue.Options{Workers: -1}},
		{"too many workers", taskqueue.Options{Workers: 10_001}},
		{"negative queue size", taskqueue.Options{QueueSize: -1}},
		{"huge queue size", taskqueue.Options{QueueSize: 1<<24 + 1}},
		{"queue size with a store", taskqueue.Options{QueueSize: 10, Store: store}},
		{"negative retention", taskqueue.Options{Retention: -time.Second}},
		{"negative max attempts", taskqueue.Options{MaxAttempts: -1}},
		{"too many attempts", taskqueue.Options{MaxAttempts: 1001}},
		{"negative timeout", taskqueue.Options{Timeout: -1}},
		{"negative progress interval", taskqueue.Options{ProgressInterval: -1}},
		{"negative payload limit", taskqueue.Options{MaxPayloadBytes: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := taskqueue.New(tc.opts)
			require.Error(t, err)
			require.Nil(t, r)
			require.True(t, strings.HasPrefix(err.Error(), "taskqueue: "), err.Error())
		})
	}
	_, err = taskqueue.NewMemoryStore(taskqueue.MemoryOptions{QueueSize: -1})
	require.Error(t, err)
}

func TestHandleRejectsBadRegistrations(t *testing.T) {
	r := newRunner(t, taskqueue.Options{})
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"empty kind", taskqueue.Handle(r, "", double)},
		{"long kind", taskqueue.Handle(r, strings.Repeat("k", 129), double)},
		{"nil handler", taskqueue.Handle[args, int](r, "nil", nil)},
		{"nil runner", taskqueue.Handle(nil, "x", double)},
		{"second handler for a kind", taskqueue.Handle(r, "double", double)},
	} {
		t.Run(tc.name, func(t *testing.T) { require.Error(t, tc.err) })
	}
	require.NoError(t, r.Start(context.Background()))
	require.ErrorContains(t, taskqueue.Handle(r, "late", double), "after Start")
	require.ErrorContains(t, r.Start(context.Background()), "already started")
}

func TestStartNeedsAHandler(t *testing.T) {
	r, err := taskqueue.New(taskqueue.Options{})
	require.NoError(t, err)
	require.ErrorContains(t, r.Start(context.Background()), "no handler")
	require.NoError(t, r.Shutdown(context.Background()))
}

func TestSubmitValidatesBeforeItAccepts(t *testing.T) {
	r := newRunner(t, taskqueue.Options{MaxPayloadBytes: 64})
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		kind     string
		payload  any
		opts     []taskqueue.SubmitOption
		sentinel error
	}{
		{"unknown kind", ctx, "resize", args{}, nil, taskqueue.ErrUnknownKind},
		{"unencodable payload", ctx, "double", make(chan int), nil, nil},
		{"payload too large", ctx, "double", strings.Repeat("x", 100), nil, nil},
		{"invalid raw JSON", ctx, "double", json.RawMessage(`{"n":`), nil, nil},
		{"zero max attempts", ctx, "double", args{}, []taskqueue.SubmitOption{taskqueue.MaxAttempts(0)}, nil},
		{"too many attempts", ctx, "double", args{}, []taskqueue.SubmitOption{taskqueue.MaxAttempts(1001)}, nil},
		{"zero timeout", ctx, "double", args{}, []taskqueue.SubmitOption{taskqueue.Timeout(0)}, nil},
		{"negative delay", ctx, "double", args{}, []taskqueue.SubmitOption{taskqueue.Delay(-time.Second)}, nil},
		{"zero run-at", ctx, "double", args{}, []taskqueue.SubmitOption{taskqueue.RunAt(time.Time{})}, nil},
		{"empty unique key", ctx, "double", args{}, []taskqueue.SubmitOption{taskqueue.UniqueKey("")}, nil},
		{"long unique key", ctx, "double", args{}, []taskqueue.SubmitOption{taskqueue.UniqueKey(strings.Repeat("k", 257))}, nil},
		{"nil option", ctx, "double", args{}, []taskqueue.SubmitOption{nil}, nil},
		{"ended ctx", canceled, "double", args{}, nil, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := r.Submit(tc.ctx, tc.kind, tc.payload, tc.opts...)
			require.Error(t, err)
			require.Equal(t, taskqueue.Info{}, info)
			if tc.sentinel != nil {
				require.ErrorIs(t, err, tc.sentinel)
			}
		})
	}
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{}, st, "nothing was stored")
}

func TestSubmitToAFullQueueIsErrQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		r, err := taskqueue.New(taskqueue.Options{QueueSize: 2, Workers: 1, MaxAttempts: 2, Backoff: func(int) time.Duration { return time.Minute }})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "held", func(ctx context.Context, job *taskqueue.Job, a args) (int, error) {
			<-release
			return 0, errors.New("again")
		}))
		ctx := context.Background()
		a, err := r.Submit(ctx, "held", args{})
		require.NoError(t, err)
		_, err = r.Submit(ctx, "held", args{}, taskqueue.Delay(time.Hour)) // delayed tasks count too
		require.NoError(t, err)
		_, err = r.Submit(ctx, "held", args{})
		require.ErrorIs(t, err, taskqueue.ErrQueueFull)

		require.NoError(t, r.Start(ctx))
		synctest.Wait() // a is running: one slot free
		c, err := r.Submit(ctx, "held", args{})
		require.NoError(t, err)
		_, err = r.Submit(ctx, "held", args{})
		require.ErrorIs(t, err, taskqueue.ErrQueueFull)
		close(release)
		synctest.Wait() // a's retry is never refused, even though the queue is full
		info, err := r.Get(ctx, a.ID)
		require.NoError(t, err)
		require.Equal(t, taskqueue.StatusPending, info.Status)
		require.Equal(t, "again", info.Error)
		require.NoError(t, r.Cancel(ctx, c.ID))

		var se *taskqueue.ShutdownError
		require.ErrorAs(t, r.Shutdown(ctx), &se)
		require.Equal(t, 2, se.Pending)
	})
}

func TestStatusText(t *testing.T) {
	for _, tc := range []struct {
		s        taskqueue.Status
		name     string
		terminal bool
	}{
		{taskqueue.StatusPending, "pending", false},
		{taskqueue.StatusRunning, "running", false},
		{taskqueue.StatusSucceeded, "succeeded", true},
		{taskqueue.StatusFailed, "failed", true},
		{taskqueue.StatusCanceled, "canceled", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.name, tc.s.String())
			require.Equal(t, tc.terminal, tc.s.Terminal())
			text, err := tc.s.MarshalText()
			require.NoError(t, err)
			var back taskqueue.Status
			require.NoError(t, back.UnmarshalText(text))
			require.Equal(t, tc.s, back)
		})
	}
	for _, bad := range []taskqueue.Status{0, 6, 255} {
		_, err := bad.MarshalText()
		require.Error(t, err, "status %d", bad)
		require.False(t, bad.Valid())
		require.Contains(t, bad.String(), "Status(")
	}
	for _, bad := range []string{"", "PENDING", "done", strings.Repeat("x", 100)} {
		_, err := taskqueue.ParseStatus(bad)
		require.Error(t, err)
		var s taskqueue.Status
		require.Error(t, json.Unmarshal([]byte(`"`+bad+`"`), &s))
	}
}

func TestExponentialBackoffDoublesWithinJitterBounds(t *testing.T) {
	b := taskqueue.ExponentialBackoff(time.Second, time.Minute)
	for _, tc := range []struct {
		attempt int
		full    time.Duration
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second},
		{6, 32 * time.Second}, {7, time.Minute}, {64, time.Minute}, {math.MaxInt, time.Minute},
	} {
		lo, hi := tc.full, time.Duration(0)
		for range 2000 {
			d := b(tc.attempt)
			require.GreaterOrEqual(t, d, tc.full/2, "attempt %d", tc.attempt)
			require.LessOrEqual(t, d, tc.full, "attempt %d", tc.attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		require.Less(t, lo, tc.full*6/10, "attempt %d: jitter reaches the lower half", tc.attempt)
		require.Greater(t, hi, tc.full*9/10, "attempt %d: jitter reaches the top", tc.attempt)
	}
	require.Panics(t, func() { taskqueue.ExponentialBackoff(0, time.Second) })
	require.Panics(t, func() { taskqueue.ExponentialBackoff(time.Second, time.Millisecond) })
}

func TestPermanent(t *testing.T) {
	base := errors.New("bad input")
	err := taskqueue.Permanent(base)
	require.ErrorIs(t, err, base)
	require.True(t, taskqueue.IsPermanent(err))
	require.True(t, taskqueue.IsPermanent(errors.Join(errors.New("x"), err)))
	require.False(t, taskqueue.IsPermanent(base))
	require.Equal(t, "bad input", err.Error())
	require.NoError(t, taskqueue.Permanent(nil))
}

func TestShutdownBeforeStartReportsPending(t *testing.T) {
	r, err := taskqueue.New(taskqueue.Options{})
	require.NoError(t, err)
	require.NoError(t, taskqueue.Handle(r, "double", double))
	_, err = r.Submit(context.Background(), "double", args{})
	require.NoError(t, err)
	var se *taskqueue.ShutdownError
	require.ErrorAs(t, r.Shutdown(context.Background()), &se)
	require.Equal(t, &taskqueue.ShutdownError{Pending: 1}, se)
	require.Equal(t, "taskqueue: shut down with 1 task(s) pending (0 interrupted)", se.Error())
}

func TestOnFinishPanicIsContained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := taskqueue.New(taskqueue.Options{OnFinish: func(taskqueue.Info) { panic("hook") }})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "double", double))
		require.NoError(t, r.Start(context.Background()))
		info, err := r.Submit(context.Background(), "double", args{N: 2})
		require.NoError(t, err)
		done, err := r.Wait(context.Background(), info.ID)
		require.NoError(t, err)
		require.JSONEq(t, "4", string(done.Result))
		_, err = r.Submit(context.Background(), "double", args{N: 3})
		require.NoError(t, err, "the Runner goes on")
		synctest.Wait()
		require.NoError(t, r.Shutdown(context.Background()))
	})
}

func TestResultTooLargeFailsTheTask(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := taskqueue.New(taskqueue.Options{MaxPayloadBytes: 16})
		require.NoError(t, err)
		require.NoError(t, taskqueue.Handle(r, "big", func(context.Context, *taskqueue.Job, args) (string, error) {
			return strings.Repeat("x", 32), nil
		}))
		require.NoError(t, taskqueue.Handle(r, "unencodable", func(context.Context, *taskqueue.Job, args) (func(), error) {
			return func() {}, nil
		}))
		require.NoError(t, r.Start(context.Background()))
		for kind, msg := range map[string]string{"big": "exceeds MaxPayloadBytes", "unencodable": "does not encode"} {
			info, err := r.Submit(context.Background(), kind, args{})
			require.NoError(t, err)
			done, err := r.Wait(context.Background(), info.ID)
			require.NoError(t, err)
			require.Equal(t, taskqueue.StatusFailed, done.Status, kind)
			require.Equal(t, 1, done.Attempt, "%s: not retried", kind)
			require.Contains(t, done.Error, msg)
		}
		require.NoError(t, r.Shutdown(context.Background()))
	})
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"pending", "running", "succeeded", "failed", "canceled", "", "Pending", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		s, err := taskqueue.ParseStatus(name)
		if err != nil {
			if s != 0 {
				t.Fatalf("ParseStatus(%q) returned %v with an error", name, s)
			}
			return
		}
		if !s.Valid() || s.String() != name {
			t.Fatalf("ParseStatus(%q) = %v", name, s)
		}
	})
}
