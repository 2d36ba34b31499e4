package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynckit/asynckit/fanout"
	"github.com/asynckit/asynckit/ratelimit"
)

// options is one run of the load generator.
type options struct {
	targets []*target
	// sequence makes one iteration send every target in turn on one
	// connection and time them together; otherwise each request sends the
	// next target, round robin.
	sequence bool
	// workers is the closed loop's number of connections, each sending its
	// next request as soon as the last one is answered; in the open loop,
	// the most requests in flight, and so the number of connections.
	workers int
	// rate, above 0, makes the loop open: requests are due at a fixed rate
	// per second, whatever the answers take.
	rate float64
	// maxRate, above 0, caps the closed loop's requests per second.
	maxRate  int
	duration time.Duration // 0: no limit
	requests int64         // 0: no limit
	timeout  time.Duration
}

// lateSlack is how far behind its due time a request of the open loop may
// be sent and still count as on time: the scheduler's own jitter.
const lateSlack = time.Millisecond

// maxErrorKinds bounds how many distinct error messages a run keeps; the
// rest are counted under "other errors".
const maxErrorKinds = 16

// stats is what a run has measured so far. Every field may be read while
// the run goes on.
type stats struct {
	latency  *histogram
	status   [1000]atomic.Uint64
	first    [1000]atomic.Int64 // the lowest request number that got each status
	started  atomic.Int64       // requests (or iterations) begun
	done     atomic.Int64       // answered, whatever the status
	failed   atomic.Int64       // no answer: connection errors, timeouts
	canceled atomic.Int64       // cut off by the end of the run
	late     atomic.Int64       // open loop: sent more than lateSlack after due

	mu     sync.Mutex
	errors map[string]int64
}

func newStats() *stats {
	s := &stats{latency: newHistogram(), errors: map[string]int64{}}
	for i := range s.first {
		s.first[i].Store(math.MaxInt64)
	}
	return s
}

// answered records a response with status to request number seq.
func (s *stats) answered(seq int64, status int, latency time.Duration) {
	s.latency.Record(latency)
	s.done.Add(1)
	s.status[status].Add(1)
	for f := s.first[status].Load(); seq < f && !s.first[status].CompareAndSwap(f, seq); f = s.first[status].Load() {
	}
}

// failure records a request that got no answer.
func (s *stats) failure(err error) {
	s.failed.Add(1)
	msg := describe(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.errors[msg]; !ok && len(s.errors) >= maxErrorKinds {
		msg = "other errors"
	}
	s.errors[msg]++
}

// describe names an error by its kind, so that errors that differ only in
// addresses or ports are counted together.
func describe(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken pipe"
	case errors.Is(err, errMalformed):
		return err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}

// errorCounts returns the errors by message, most frequent first.
func (s *stats) errorCounts() []errorCount {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]errorCount, 0, len(s.errors))
	for m, n := range s.errors {
		out = append(out, errorCount{Error: m, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Error < out[j].Error
	})
	return out
}

// errorCount is how many requests failed with one error.
type errorCount struct {
	Error string `json:"error"`
	Count int64  `json:"count"`
}

// generator is one load test: its options, what it measured, and when.
type generator struct {
	opt   options
	stats *stats
	start time.Time
	next  atomic.Int64 // the next request number to claim
}

// execute runs the loop that o asks for until ctx ends, o.duration passes
// or o.requests have been claimed, and returns the time it ran. It starts
// exactly o.workers goroutines, through fanout.Do, and returns once every
// one of them has; requests still in flight when the run stops are cut off
// and counted as canceled.
func (r *generator) execute(ctx context.Context) (time.Duration, error) {
	o := r.opt
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var pace *ratelimit.TokenBucket
	if o.maxRate > 0 {
		var err error
		if pace, err = ratelimit.NewTokenBucket(ratelimit.PerSecond(o.maxRate).WithBurst(1), ratelimit.Options{MaxKeys: 1}); err != nil {
			return 0, err
		}
	}
	worker := func(ctx context.Context) error { return r.closed(ctx, pace) }
	if o.rate > 0 {
		worker = r.open
	}
	workers := make([]func(context.Context) error, o.workers)
	for i := range workers {
		workers[i] = worker
	}
	r.start = time.Now()
	err := fanout.Do(ctx, workers, fanout.Limit(o.workers), fanout.FailFast(false))
	elapsed := time.Since(r.start)
	if o.duration > 0 {
		elapsed = min(elapsed, o.duration)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		err = nil // the ordinary end of a run
	}
	return elapsed, err
}

// claim returns the next request number, or false when o.requests have
// been claimed.
func (r *generator) claim() (int64, bool) {
	seq := r.next.Add(1) - 1
	return seq, r.opt.requests == 0 || seq < r.opt.requests
}

// closed is one worker of the closed loop: it sends a request, waits for
// the answer, and sends the next. Latency runs from the send.
func (r *generator) closed(ctx context.Context, pace *ratelimit.TokenBucket) error {
	var c conn
	defer c.close()
	for ctx.Err() == nil {
		seq, ok := r.claim()
		if !ok {
			return nil
		}
		if pace != nil {
			if err := pace.Wait(ctx, "run"); err != nil {
				return nil // the run ended while waiting
			}
		}
		r.send(ctx, &c, seq, time.Now())
	}
	return nil
}

// open is one worker of the open loop. Request number i is due at
// start + i/rate, whatever happened to the requests before it; a free
// worker takes the next number, waits until it is due and sends it. When
// every worker is busy (the server is slow or stalled), requests fall
// behind their due times, and each is sent as soon as a worker is free,
// counted late, and timed from its due time, not from its send: the wait
// is part of the latency that a client arriving at that time would see,
// which a closed loop would leave out (coordinated omission). Requests
// still waiting for a worker when the run ends are counted as dropped.
func (r *generator) open(ctx context.Context) error {
	var c conn
	defer c.close()
	interval := float64(time.Second) / r.opt.rate
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for ctx.Err() == nil {
		seq, ok := r.claim()
		if !ok {
			return nil
		}
		due := r.start.Add(time.Duration(float64(seq) * interval))
		if dl, ok := ctx.Deadline(); ok && !due.Before(dl) {
			return nil // due after the end
		}
		if wait := time.Until(due); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
			}
		} else if -wait > lateSlack {
			r.stats.late.Add(1)
		}
		r.send(ctx, &c, seq, due)
	}
	return nil
}

// send sends request number seq, or with o.sequence every target in turn,
// and records the latency from from.
func (r *generator) send(ctx context.Context, c *conn, seq int64, from time.Time) {
	r.stats.started.Add(1)
	ts := r.opt.targets
	if !r.opt.sequence {
		ts = ts[seq%int64(len(ts)) : seq%int64(len(ts))+1]
	}
	status := 0
	for _, t := range ts {
		s, err := c.do(ctx, t, r.opt.timeout)
		if err != nil {
			if ctx.Err() != nil {
				r.stats.canceled.Add(1)
			} else {
				r.stats.failure(fmt.Errorf("%s %s: %w", t.method, t.url, err))
			}
			return
		}
		status = s
		if s < 200 || s > 299 {
			break // a sequence stops at its first failure
		}
	}
	r.stats.answered(seq, status, time.Since(from))
}

// dropped returns how many requests of the open loop were due before the
// run stopped, after elapsed, but never sent.
func (r *generator) dropped(elapsed time.Duration) int64 {
	if r.opt.rate <= 0 {
		return 0
	}
	due := int64(math.Ceil(elapsed.Seconds() * r.opt.rate))
	if r.opt.requests > 0 {
		due = min(due, r.opt.requests)
	}
	return max(due-r.stats.started.Load(), 0)
}
