package taskqueuetest

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

// Run runs the conformance suite against stores made by newStore, one empty
// store per behaviour.
func Run(t *testing.T, newStore func(t *testing.T) taskqueue.Store) {
	t.Helper()
	if newStore == nil {
		t.Fatal("taskqueuetest: Run needs a newStore function")
	}
	for _, b := range behaviours {
		t.Run(b.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { b.test(t, newStore) })
		})
	}
}

type behaviour struct {
	name string
	test func(t *testing.T, newStore func(t *testing.T) taskqueue.Store)
}

// behaviours is filled by the init functions of this package's files.
var behaviours []behaviour

func register(bs ...behaviour) { behaviours = append(behaviours, bs...) }

// Payload and Result are the types the suite's handlers take and give.
type Payload struct {
	N    int    `json:"n"`
	Text string `json:"text,omitempty"`
}

// Result is what the suite's handlers return.
type Result struct {
	Double int `json:"double"`
}

// bundle is one Runner over one store, with what the test needs to watch it.
type bundle struct {
	t        *testing.T
	store    taskqueue.Store
	r        *taskqueue.Runner
	finished chan taskqueue.Info
	started  bool
	shutdown bool
}

// newBundle makes a Runner over a fresh store with opts, calls register to
// add handlers, and shuts the Runner down at cleanup. It does not Start.
func newBundle(t *testing.T, newStore func(*testing.T) taskqueue.Store, opts taskqueue.Options, register func(r *taskqueue.Runner)) *bundle {
	t.Helper()
	b := &bundle{t: t, store: newStore(t), finished: make(chan taskqueue.Info, 4096)}
	opts.Store = b.store
	opts.OnFinish = func(info taskqueue.Info) {
		select {
		case b.finished <- info:
		default:
			t.Errorf("OnFinish backlog full at task %s", info.ID)
		}
	}
	r, err := taskqueue.New(opts)
	require.NoError(t, err)
	b.r = r
	register(r)
	t.Cleanup(func() {
		if !b.shutdown {
			_ = r.Shutdown(context.Background())
		}
	})
	return b
}

func (b *bundle) start() *bundle {
	b.t.Helper()
	require.NoError(b.t, b.r.Start(context.Background()))
	b.started = true
	return b
}

// stop shuts the Runner down and returns Shutdown's error.
func (b *bundle) stop(ctx context.Context) error {
	b.shutdown = true
	return b.r.Shutdown(ctx)
}

func (b *bundle) submit(kind string, p any, opts ...taskqueue.SubmitOption) taskqueue.Info {
	b.t.Helper()
	info, err := b.r.Submit(context.Background(), kind, p, opts...)
	require.NoError(b.t, err)
	return info
}

func (b *bundle) wait(id string) taskqueue.Info {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	info, err := b.r.Wait(ctx, id)
	require.NoError(b.t, err)
	return info
}

func (b *bundle) get(id string) taskqueue.Info {
	b.t.Helper()
	info, err := b.r.Get(context.Background(), id)
	require.NoError(b.t, err)
	return info
}

// handle registers fn for kind, failing the test on error.
func handle[P, R any](t *testing.T, r *taskqueue.Runner, kind string, fn func(context.Context, *taskqueue.Job, P) (R, error)) {
	t.Helper()
	require.NoError(t, taskqueue.Handle(r, kind, fn))
}

// double is the suite's ordinary handler.
func double(_ context.Context, _ *taskqueue.Job, p Payload) (Result, error) {
	return Result{Double: 2 * p.N}, nil
}

func requireTime(t *testing.T, want, got time.Time, what string) {
	t.Helper()
	require.Truef(t, want.Equal(got), "%s: want %v, got %v", what, want, got)
}

// errBoom is the suite's handler error.
var errBoom = errors.New("boom")
