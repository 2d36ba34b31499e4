package pgstore_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// panicTracer panics, once armed, in the hook that pgx calls before it
// sends the next statement whose text contains match: a tracer or driver
// hook that fails while a batch's leader runs its statement.
type panicTracer struct {
	match string
	armed atomic.Bool
}

func (p *panicTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, p.match) && p.armed.CompareAndSwap(true, false) {
		panic("tracer exploded")
	}
	return ctx
}

func (p *panicTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// recovered runs fn and returns what it panicked with.
func recovered(fn func()) (p any) {
	defer func() { p = recover() }()
	fn()
	return nil
}

// A panic in the claim statement's leader goes up to that caller, and the
// claims after it are served: the group is not left waiting for a leader
// that is gone. Likewise for the statement that ends attempts.
func TestAPanicWhileABatchRunsReachesItsLeaderAndTheStoreCarriesOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, schema := setup(t)
	tracer := &panicTracer{}
	cfg := connConfig(t, schema, "")
	cfg.Tracer = tracer
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { _ = db.Close() })
	store := open(t, db, schema, pgstore.Options{DisableListener: true})
	r := idle(t, store)
	for n := range 2 {
		_, err := r.Submit(ctx, "job", args{N: n})
		require.NoError(t, err)
	}

	t.Run("claim", func(t *testing.T) {
		tracer.match = "claim_due"
		tracer.armed.Store(true)
		require.Equal(t, "tracer exploded", recovered(func() { _, _ = store.Claim(ctx, nil) }))
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		task, err := store.Claim(cctx, nil)
		require.NoError(t, err, "the next Claim leads in its turn")
		require.Equal(t, 1, task.Attempt)
	})

	t.Run("end", func(t *testing.T) {
		first := claimOne(t, store)
		tracer.match = "unnest("
		tracer.armed.Store(true)
		require.Equal(t, "tracer exploded", recovered(func() {
			_, _ = store.Finish(ctx, first.ID, first.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded})
		}))
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		info, err := store.Finish(fctx, first.ID, first.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded})
		require.NoError(t, err, "the next ending leads in its turn; the panic came before the statement was sent")
		require.Equal(t, taskqueue.StatusSucceeded, info.Status)
	})
}
