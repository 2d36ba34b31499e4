package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/fanout"
)

// stressSize is the size of the randomized runs: modest in the normal test
// run, large with ASYNCKIT_SOAK=1.
func stressSize() (rounds, items int) {
	if os.Getenv("ASYNCKIT_SOAK") == "1" {
		return 40, 250_000
	}
	return 24, 2_000
}

// plan is a randomized workload: what each item does, and when (if ever)
// the parent context is cancelled.
type plan struct {
	limit    int
	failFast bool
	cancelAt int64 // cancel the parent when this many calls have started; 0: never
	kind     []byte
}

const (
	kindOK    = iota // returns 2i+1
	kindFail         // returns its own error
	kindPanic        // panics
	kindYield        // yields, then returns ctx.Err() if ctx ended, else 2i+1
)

func newPlan(r *rand.Rand, n int) plan {
	p := plan{limit: 1 + r.IntN(32), failFast: r.IntN(2) == 0, kind: make([]byte, n)}
	if r.IntN(3) == 0 {
		p.cancelAt = 1 + r.Int64N(int64(n))
	}
	failRate := []int{0, 1, 100, n}[r.IntN(4)] // none, rare, frequent, at most one
	for i := range p.kind {
		switch x := r.IntN(1000); {
		case failRate == n && i == n/2:
			p.kind[i] = kindFail
		case failRate > 0 && failRate < n && x < failRate/2:
			p.kind[i] = kindFail
		case failRate > 0 && failRate < n && x < failRate:
			p.kind[i] = kindPanic
		case x >= 900:
			p.kind[i] = kindYield
		}
	}
	return p
}

// observed is what the calls of one run actually did.
type observed struct {
	tracker
	started []atomic.Bool
	errs    []error // the error item i returned (nil for success), set once
	failed  atomic.Int64
}

func (p plan) fn(o *observed, cancel context.CancelFunc) func(context.Context, int) (int, error) {
	return func(ctx context.Context, i int) (int, error) {
		o.enter()
		defer o.exit()
		if o.started[i].Swap(true) {
			panic(fmt.Sprintf("item %d called twice", i))
		}
		if n := o.calls.Load(); p.cancelAt > 0 && n == p.cancelAt {
			cancel()
		}
		switch p.kind[i] {
		case kindFail:
			err := &codeError{code: i}
			o.errs[i] = err
			o.failed.Add(1)
			return 0, err
		case kindPanic:
			o.errs[i] = errors.New("panicked")
			o.failed.Add(1)
			panic(i)
		case kindYield:
			runtime.Gosched()
			if err := ctx.Err(); err != nil {
				o.errs[i] = err
				return 0, err
			}
		}
		return 2*i + 1, nil
	}
}

func TestMapInvariantsUnderRandomFailuresPanicsAndCancellation(t *testing.T) {
	rounds, n := stressSize()
	for round := range rounds {
		r := rand.New(rand.NewPCG(uint64(round), 42))
		p := newPlan(r, n)
		t.Run(fmt.Sprintf("round=%d/limit=%d/failFast=%v/cancelAt=%d", round, p.limit, p.failFast, p.cancelAt), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			o := &observed{started: make([]atomic.Bool, n), errs: make([]error, n)}
			items := make([]int, n)
			for i := range items {
				items[i] = i
			}
			out, err := fanout.Map(ctx, items, p.fn(o, cancel), fanout.Limit(p.limit), fanout.FailFast(p.failFast))

			require.Zero(t, o.running.Load(), "a call outlived Map")
			require.LessOrEqual(t, o.peak.Load(), int64(p.limit))
			allOK := o.calls.Load() == int64(n)
			for i := range n {
				if o.started[i].Load() && o.errs[i] == nil {
					require.Equal(t, 2*i+1, out[i], "item %d", i)
					continue
				}
				allOK = false
				require.Zero(t, out[i], "item %d", i)
			}
			if allOK {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, e := range flatten(err) {
				var ie *fanout.ItemError
				if !errors.As(e, &ie) {
					require.ErrorIs(t, e, context.Canceled, "only ctx.Err() comes untagged")
					continue
				}
				require.NotNil(t, o.errs[ie.Index], "item %d reported but it did not fail", ie.Index)
				var pe *fanout.PanicError
				if errors.As(ie.Err, &pe) {
					require.Equal(t, ie.Index, pe.Value)
				} else {
					require.Equal(t, o.errs[ie.Index], ie.Err)
				}
			}
			if !p.failFast && p.cancelAt == 0 {
				require.Equal(t, o.failed.Load(), int64(len(flatten(err))), "without fail-fast every failure is reported")
			}
		})
	}
}

func TestSettleAndStreamInvariantsUnderRandomFailuresPanicsAndCancellation(t *testing.T) {
	rounds, n := stressSize()
	rounds /= 2
	for round := range rounds {
		r := rand.New(rand.NewPCG(uint64(round), 7))
		p := newPlan(r, n)
		p.failFast = false
		for _, via := range []string{"Settle", "Stream"} {
			t.Run(fmt.Sprintf("%s/round=%d/limit=%d/cancelAt=%d", via, round, p.limit, p.cancelAt), func(t *testing.T) {
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				o := &observed{started: make([]atomic.Bool, n), errs: make([]error, n)}
				items := make([]int, n)
				for i := range items {
					items[i] = i
				}
				opts := []fanout.Option{fanout.Limit(p.limit)}
				var res []fanout.Result[int]
				if via == "Settle" {
					res = fanout.Settle(ctx, items, p.fn(o, cancel), opts...)
				} else {
					res = make([]fanout.Result[int], n)
					seen := make([]bool, n)
					for i, r := range fanout.Stream(ctx, items, p.fn(o, cancel), opts...) {
						require.False(t, seen[i], "item %d yielded twice", i)
						seen[i] = true
						res[i] = r
					}
					require.NotContains(t, seen, false, "an item was never yielded")
				}
				require.Zero(t, o.running.Load(), "a call outlived %s", via)
				require.LessOrEqual(t, o.peak.Load(), int64(p.limit))
				for i, r := range res {
					switch {
					case !o.started[i].Load():
						require.Equal(t, fanout.Result[int]{Err: context.Canceled}, r, "item %d never started", i)
					case p.kind[i] == kindPanic:
						var pe *fanout.PanicError
						require.ErrorAs(t, r.Err, &pe)
						require.Equal(t, i, pe.Value)
					case o.errs[i] != nil:
						require.Equal(t, fanout.Result[int]{Err: o.errs[i]}, r)
					default:
						require.Equal(t, fanout.Result[int]{Value: 2*i + 1}, r)
					}
				}
			})
		}
	}
}

// flatten returns the parts of a joined error, or the error itself.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
