package fanout_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// tracker counts calls, the calls running now, and the most that ever ran
// at once.
type tracker struct {
	calls, running, peak atomic.Int64
}

func (t *tracker) enter() {
	t.calls.Add(1)
	n := t.running.Add(1)
	for {
		p := t.peak.Load()
		if n <= p || t.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (t *tracker) exit() { t.running.Add(-1) }

// sleep waits for d or for ctx to end, whichever comes first, and returns
// ctx.Err() in the second case, as a well-behaved upstream call does.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
