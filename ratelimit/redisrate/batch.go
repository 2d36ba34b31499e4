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
// way a database commits a group of transactions together. A call that
// finds no batch in flight sends at once, as a batch of one, and so leads:
// while its pipeline is out, later calls queue, and when it returns, the
// oldest of them is chosen to lead the next batch, which takes up to max
// queued calls. No goroutine runs in the background; the queue holds only
// calls whose callers are blocked waiting, so it is bounded by the callers.
//
// A caller whose ctx ends while it is queued leaves the queue, and one
// chosen to lead hands the lead on; neither was sent. One whose call was
// already sent returns ctx's error at once, as a direct call would, though
// Redis may still run, and charge, its decision.
type batcher struct {
	c      pipeliner
	script *redis.Script
	max    int

	mu    sync.Mutex
	queue []*call // waiting to be sent, oldest first
	busy  bool    // a leader is sending, or has been chosen
	// batch is the leader's buffer; only the leader of the moment uses it.
	batch []*call
}

type callState uint8

const (
	queued callState = iota
	chosen           // to lead the next batch; not sent yet
	sent             // taken into a batch; the result follows
)

// call is one decision passing through a batcher.
type call struct {
	ctx  context.Context
	keys []string
	args []any

	state callState // guarded by batcher.mu
	// wake is signalled once the result is in, or when the call is chosen
	// to lead (its state says which); it is buffered, so the signaller
	// never blocks on a caller that has left.
	wake chan struct{}
	vals []int64
	err  error
}

func newBatcher(c pipeliner, script *redis.Script, max int) *batcher {
	return &batcher{c: c, script: script, max: max}
}

// do runs the script for keys and args in some batch, and returns its
// reply as integers.
func (b *batcher) do(ctx context.Context, keys []string, args []any) ([]int64, error) {
	c := &call{ctx: ctx, keys: keys, args: args, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, c)
	if !b.busy {
		b.busy = true
		c.state = chosen
		b.mu.Unlock()
		b.lead(c)
		return c.vals, c.err
	}
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
			b.remove(c)
			b.handOff()
			b.mu.Unlock()
			return nil, ctx.Err()
		}
		b.mu.Unlock()
		select {
		case <-c.wake: // sent, and the result came in meanwhile
			return c.vals, c.err
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
	return c.vals, c.err
}

// lead sends batches from the head of the queue until own, a call in it,
// has been sent, then chooses the next leader. The caller holds the lead.
func (b *batcher) lead(own *call) {
	defer func() {
		if v := recover(); v != nil {
			// Pass the lead on before the panic leaves, taking own out of
			// the queue if it is still there: its caller is leaving.
			b.mu.Lock()
			if own.state != sent {
				b.remove(own)
			}
			b.handOff()
			b.mu.Unlock()
			panic(v)
		}
	}()
	for {
		b.mu.Lock()
		n := min(len(b.queue), b.max)
		batch := append(b.batch[:0], b.queue[:n]...)
		b.queue = append(b.queue[:0], b.queue[n:]...)
		clear(b.queue[len(b.queue) : len(b.queue)+n]) // drop the moved calls' pointers
		for _, c := range batch {
			c.state = sent
		}
		ownSent := own.state == sent
		b.mu.Unlock()

		b.sendAndWake(batch)
		clear(batch)
		b.batch = batch[:0]

		if ownSent {
			b.mu.Lock()
			b.handOff()
			b.mu.Unlock()
			return
		}
	}
}

// sendAndWake sends batch and wakes its callers. If sending panics (in a
// hook of the client's, say), the callers get an error before the panic
// goes on up to the leader (see lead), so that none waits forever.
func (b *batcher) sendAndWake(batch []*call) {
	defer func() {
		if v := recover(); v != nil {
			for _, c := range batch {
				if c.vals == nil && c.err == nil {
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

// wake signals each call of batch that its result is in.
func (b *batcher) wake(batch []*call) {
	for _, c := range batch {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// handOff chooses the oldest queued call to lead the next batch, or marks
// the batcher idle. b.mu must be held.
func (b *batcher) handOff() {
	if len(b.queue) == 0 {
		b.busy = false
		return
	}
	next := b.queue[0]
	next.state = chosen
	select {
	case next.wake <- struct{}{}:
	default:
	}
}

// remove takes c, which is queued or chosen, out of the queue. b.mu must
// be held.
func (b *batcher) remove(c *call) {
	for i, q := range b.queue {
		if q == c {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			clear(b.queue[len(b.queue) : len(b.queue)+1])
			return
		}
	}
}

// send runs batch as one pipeline and stores each call's result. Calls
// whose ctx has already ended are not sent. The pipeline's ctx carries the
// values of the first call's and the latest deadline of all, since the
// calls share the round trip; if Redis has not cached the script, it is
// loaded once and the calls that missed it are sent again.
func (b *batcher) send(batch []*call) {
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
		c.vals, c.err = cmds[i].Int64Slice()
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
