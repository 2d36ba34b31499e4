package redisrate

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBatchHandsOnTheLead: a queued call whose ctx ends just as it is
// given a lane must not take the lane away with it, whichever of the two
// signals its select sees first. Then the batcher is idle again, so that
// the next call sends at once. No Redis is needed: a
// call whose ctx has ended is never sent.
func TestBatchHandsOnTheLead(t *testing.T) {
	for i := range 50 {
		b := newBatcher(nil, gcraScript, 4)
		b.lanes, b.leaders = 1, 1 // a leader is out with a batch
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := b.do(ctx, []string{"k"}, nil)
			errc <- err
		}()
		require.Eventually(t, func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.queue) == 1
		}, 5*time.Second, time.Millisecond)

		// The leader returns: it gives its lane to the queued call, whose
		// ctx ends at the same moment.
		b.mu.Lock()
		cancel()
		b.handOff()
		b.mu.Unlock()

		require.ErrorIs(t, <-errc, context.Canceled, "round %d", i)
		b.mu.Lock()
		require.Zero(t, b.leaders, "round %d: the lane was lost", i)
		require.Empty(t, b.queue, "round %d", i)
		b.mu.Unlock()
	}
}
