package redisrate

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// pipeliner is what batching needs of a client: pipelines, and scripting
// to load a script that Redis has not cached yet.
type pipeliner interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
}

// batcher lets concurrent decisions of one Limiter share round trips, the
// way a database commits a group of transactions together. Up to lanes
// batches are in flight at once. A call that finds a lane free takes it
// and sends at once, as a batch of one, so that a limiter with fewer
// concurrent callers than lanes sends each decision as it comes. When
// every lane is taken, calls queue; a leader whose batch returns gives its
// lane to the oldest of them, which sends itself and up to max−1 of the
// calls queued behind it as one pipeline. No goroutine runs in the
// background; the queue holds only calls whose callers are blocked
// waiting, so it is bounded by the callers.
//
// A caller whose ctx ends while it is queued leaves the queue, and one
// given a lane that it has not used yet gives the lane on; neither was
// sent. One whose call was already sent returns ctx's error at once, as a
// direct call would, though Redis may still run, and charge, its decision.
type batcher struct {
	c      pipeliner
	script *redis.Script
	max    int // most calls in one batch
	lanes  int // most batches in flight

	mu sync.Mutex
	// queue holds the calls waiting for a lane, oldest first. It is empty
	// unless every lane is taken: a lane is freed only when it is empty.
	queue   []*call
	leaders int       // calls holding a lane: sending, or given one
	bufs    [][]*call // batch buffers for reuse, at most lanes
}

type callState uint8

const (
	queued callState = iota
	chosen           // given a lane, not sent yet
	sent             // taken into a batch; the result follows
)

// call is one decision passing through a batcher.
type call struct {
	ctx  context.Context
	keys []string
	args []any

	state callState // guarded by batcher.mu
	// wake is signalled once the result is in, or when the call is given
	// a lane (its state says which); it is buffered, so the signaller
	// never blocks on a caller that has left.
	wake  chan struct{}
	reply any // the script's reply, as go-redis read it
	err   error
}

// batchLanes is how many batches a batcher keeps in flight at once.
// Against a local Redis on 2 cores, GCRA decisions per second with Batch
// 64 were, by lanes (1, 2, 4, 8, 16): 41k, 51k, 68k, 82k, 81k from 8
// callers (82k unbatched) and 106k, 139k, 148k, 148k, 144k from 64
// callers (86k–96k unbatched).
const batchLanes = 8

func newBatcher(c pipeliner, script *redis.Script, max int) *batcher {
	return &batcher{c: c, script: script, max: max, lanes: batchLanes}
}

// do runs the script for keys and args in some batch, and returns its
// reply as integers.
func (b *batcher) do(ctx context.Context, keys []string, args []any) (any, error) {
	c := &call{ctx: ctx, keys: keys, args: args}
	b.mu.Lock()
	if b.leaders < b.lanes {
		b.leaders++
		c.state = chosen
		b.mu.Unlock()
		b.lead(c)
		return c.reply, c.err
	}
	c.wake = make(chan struct{}, 1)
	b.queue = append(b.queue, c)
	b.mu.Unlock()

	select {
	case <-c.wake:
	case <-ctx.Done():
		b.mu.Lock()
		switch c.state {
		case queued:
			b.remove(c)
			b.mu.Unlock()
			return nil, ctx.Err()
		case chosen:
			b.handOff()
			b.mu.Unlock()
			return nil, ctx.Err()
		}
		b.mu.Unlock()
		select {
		case <-c.wake: // sent, and the result came in meanwhile
			return c.reply, c.err
		default:
			return nil, ctx.Err()
		}
	}
	b.mu.Lock()
	st := c.state
	b.mu.Unlock()
	if st == chosen {
		b.lead(c)
	}
	return c.reply, c.err
}

// lead sends own, which holds a lane, with up to max−1 of the oldest
// queued calls, then gives the lane on.
func (b *batcher) lead(own *call) {
	defer func() {
		if v := recover(); v != nil {
			// Give the lane on before the panic leaves: the batch's
			// callers have their errors (see sendAndWake).
			b.mu.Lock()
			b.handOff()
			b.mu.Unlock()
			panic(v)
		}
	}()
	b.mu.Lock()
	var batch []*call
	if k := len(b.bufs); k > 0 {
		batch, b.bufs = b.bufs[k-1], b.bufs[:k-1]
	} else {
		batch = make([]*call, 0, b.max)
	}
	n := min(len(b.queue), b.max-1)
	batch = append(append(batch, own), b.queue[:n]...)
	b.dequeue(n)
	for _, c := range batch {
		c.state = sent
	}
	b.mu.Unlock()

	b.sendAndWake(batch)
	clear(batch)

	b.mu.Lock()
	b.bufs = append(b.bufs, batch[:0])
	b.handOff()
	b.mu.Unlock()
}

// sendAndWake sends batch and wakes its callers. If sending panics (in a
// hook of the client's, say), the callers get an error before the panic
// goes on up to the leader (see lead), so that none waits forever.
func (b *batcher) sendAndWake(batch []*call) {
	defer func() {
		if v := recover(); v != nil {
			for _, c := range batch {
				if c.reply == nil && c.err == nil {
					c.err = fmt.Errorf("redisrate: sending the batch panicked: %v", v)
				}
			}
			b.wake(batch)
			panic(v)
		}
	}()
	b.send(batch)
	b.wake(batch)
}

// wake signals each call of batch that its result is in. A call that
// took a free lane has no channel: its own caller sent it.
func (b *batcher) wake(batch []*call) {
	for _, c := range batch {
		if c.wake == nil {
			continue
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// handOff gives the lane of a leader that is done, or leaving, to the
// oldest queued call, or frees it. b.mu must be held.
func (b *batcher) handOff() {
	if len(b.queue) == 0 {
		b.leaders--
		return
	}
	next := b.queue[0]
	b.dequeue(1)
	next.state = chosen
	select {
	case next.wake <- struct{}{}:
	default:
	}
}

// dequeue drops the n oldest calls from the queue. b.mu must be held.
func (b *batcher) dequeue(n int) {
	m := copy(b.queue, b.queue[n:])
	clear(b.queue[m:]) // drop the moved calls' pointers
	b.queue = b.queue[:m]
}

// remove takes c, which is queued, out of the queue. b.mu must be held.
func (b *batcher) remove(c *call) {
	for i, q := range b.queue {
		if q == c {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			clear(b.queue[len(b.queue) : len(b.queue)+1])
			return
		}
	}
}

// send runs batch and stores each call's result. Calls whose ctx has
// already ended are not sent. A batch of one goes as a lone command with
// its own ctx, as an unbatched limiter sends it, since a pipeline costs
// more. A larger batch goes as one pipeline, whose ctx carries the values
// of the first call's and the latest deadline of all, since the calls
// share the round trip; if Redis has not cached the script, it is loaded
// once and the calls that missed it are sent again.
func (b *batcher) send(batch []*call) {
	if len(batch) == 1 {
		c := batch[0]
		if c.err = c.ctx.Err(); c.err == nil {
			c.reply, c.err = b.script.Run(c.ctx, b.c, c.keys, c.args...).Result()
		}
		return
	}
	live := batch[:0:0]
	var latest time.Time
	deadlines := true
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			continue
		}
		live = append(live, c)
		if d, ok := c.ctx.Deadline(); !ok {
			deadlines = false
		} else if d.After(latest) {
			latest = d
		}
	}
	if len(live) == 0 {
		return
	}
	ctx := context.WithoutCancel(live[0].ctx)
	if deadlines {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, latest)
		defer cancel()
	}
	cmds := b.exec(ctx, live, nil)
	var missed []int
	for i, cmd := range cmds {
		if redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
			missed = append(missed, i)
		}
	}
	if len(missed) > 0 && b.script.Load(ctx, b.c).Err() == nil {
		again := b.exec(ctx, live, missed)
		for j, i := range missed {
			cmds[i] = again[j]
		}
	}
	for i, c := range live {
		c.reply, c.err = cmds[i].Result()
	}
}

// exec sends the calls of batch at the indices only (all of them if only
// is nil) in one pipeline, and returns their commands in that order.
func (b *batcher) exec(ctx context.Context, batch []*call, only []int) []*redis.Cmd {
	pipe := b.c.Pipeline()
	var cmds []*redis.Cmd
	if only == nil {
		cmds = make([]*redis.Cmd, len(batch))
		for i, c := range batch {
			cmds[i] = b.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
	} else {
		cmds = make([]*redis.Cmd, len(only))
		for j, i := range only {
			cmds[j] = b.script.EvalSha(ctx, pipe, batch[i].keys, batch[i].args...)
		}
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	return cmds
}
