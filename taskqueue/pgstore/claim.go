package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/asynckit/asynckit/taskqueue"
)

// maxClaimBatch bounds how many tasks one claim statement takes.
const maxClaimBatch = 1000

// Claims are coalesced: the Claims waiting for the same kinds form a
// group, and one of them at a time (the leader) runs the claim statement
// for as many tasks as the group has waiters, then hands the tasks out
// first come, first served. A Runner's workers therefore cost one
// statement per batch, not one each, and no task is claimed before a
// worker waits for it. When a claim comes back short, nothing more is due
// for the group: its waiters sleep until a wake-up (an insert, retry or
// rescue through this store, a notification from another instance), the
// earliest delayed task falls due, or PollInterval passes; only the head
// of the group keeps a timer.

// claimGroup is the Claims waiting for one set of kinds.
type claimGroup struct {
	key     string
	kinds   []string // nil: any kind
	waiters []*claimWaiter
	busy    bool      // a claim statement is in flight for the group
	more    bool      // work may be due: the next waiter to look claims
	events  uint64    // wake-ups so far; one during a claim means look again
	nextDue time.Time // the earliest pending task not yet due, or zero
}

// claimWaiter is one Claim call waiting in a group.
type claimWaiter struct {
	ch   chan struct{}   // capacity 1: a task was handed over, or look again
	ctx  context.Context // the Claim's: once it has ended, no task is handed over
	task taskqueue.Task
	got  bool
}

// signal wakes w if it is not already due to wake.
func signal(w *claimWaiter) {
	select {
	case w.ch <- struct{}{}:
	default:
	}
}

func groupKey(kinds []string) string {
	if kinds == nil {
		return ""
	}
	return "\x00" + strings.Join(kinds, "\x00")
}

// wake tells the groups that run kind ("" for all) that work may be due.
func (s *Store) wake(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if kind == "" || g.kinds == nil || slices.Contains(g.kinds, kind) {
			g.events++
			g.more = true
			if !g.busy && len(g.waiters) > 0 {
				signal(g.waiters[0])
			}
		}
	}
}

// Claim implements taskqueue.Store. See the package documentation for how
// claims are batched and woken.
func (s *Store) Claim(ctx context.Context, kinds []string) (taskqueue.Task, error) {
	if kinds != nil && len(kinds) == 0 {
		return taskqueue.Task{}, errors.New("pgstore: Claim needs at least one kind, or nil for any")
	}
	if err := ctx.Err(); err != nil {
		return taskqueue.Task{}, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return taskqueue.Task{}, ErrClosed
	}
	key := groupKey(kinds)
	g := s.groups[key]
	if g == nil {
		g = &claimGroup{key: key, kinds: slices.Clone(kinds), more: true}
		s.groups[key] = g
	}
	var w *claimWaiter
	if k := len(s.spare); k > 0 {
		w, s.spare = s.spare[k-1], s.spare[:k-1]
	} else {
		w = &claimWaiter{ch: make(chan struct{}, 1)}
	}
	w.ctx = ctx
	g.waiters = append(g.waiters, w)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if w.got {
			t := w.task
			s.recycle(w)
			s.mu.Unlock()
			return t, nil
		}
		if s.closed || ctx.Err() != nil {
			err := ctx.Err()
			if err == nil {
				err = ErrClosed
			}
			s.leave(g, w)
			s.mu.Unlock()
			return taskqueue.Task{}, err
		}
		if !g.busy && g.more {
			if p, err := s.lead(ctx, g); (err != nil || p != nil) && !w.got {
				s.leave(g, w)
				s.mu.Unlock()
				if p != nil {
					panic(p) // the group is left working: see lead
				}
				return taskqueue.Task{}, err
			}
			continue
		}
		var tc <-chan time.Time
		if !g.busy && g.waiters[0] == w {
			d := s.opts.PollInterval
			if !g.nextDue.IsZero() {
				d = min(d, max(time.Until(g.nextDue), 0))
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			tc = timer.C
		}
		s.mu.Unlock()
		fired := false
		select {
		case <-w.ch:
		case <-tc:
			fired = true
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		s.mu.Lock()
		if fired {
			g.more = true
		}
	}
}

// recycle keeps w for a later Claim. s.mu is held and w is in no group.
func (s *Store) recycle(w *claimWaiter) {
	select {
	case <-w.ch:
	default:
	}
	w.task, w.got, w.ctx = taskqueue.Task{}, false, nil
	if len(s.spare) < 1024 {
		s.spare = append(s.spare, w)
	}
}

// leave takes w out of g, passing the head's timer on, and drops g once it
// is empty. s.mu is held.
func (s *Store) leave(g *claimGroup, w *claimWaiter) {
	if i := slices.Index(g.waiters, w); i >= 0 {
		g.waiters = slices.Delete(g.waiters, i, i+1)
		if i == 0 && len(g.waiters) > 0 {
			signal(g.waiters[0])
		}
	}
	s.recycle(w)
	s.dropIfIdle(g)
}

func (s *Store) dropIfIdle(g *claimGroup) {
	if len(g.waiters) == 0 && !g.busy && s.groups[g.key] == g {
		delete(s.groups, g.key)
	}
}

// lead runs one claim statement for g and hands out what it took. s.mu is
// held, and released while the statement runs. The statement runs for the
// whole group, so it is bounded by the store's timeout rather than by the
// leader's ctx. A panic while it runs (in a driver's or a tracer's hook,
// say) is returned as p, after the group is made ready for its next
// leader, for the caller to raise once it has left the group: the other
// waiters carry on, and the tasks claimed, if any, are rescued when their
// lease expires.
func (s *Store) lead(ctx context.Context, g *claimGroup) (p any, err error) {
	g.busy, g.more = true, false
	n := min(len(g.waiters), maxClaimBatch)
	seen := g.events
	s.mu.Unlock()
	var tasks []taskqueue.Task
	var next time.Time
	func() {
		defer func() {
			if p = recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout())
		defer cancel()
		tasks, next, err = s.claimBatch(qctx, g.kinds, n)
	}()
	s.mu.Lock()
	g.busy = false
	if err != nil {
		// The next waiter to look tries again; the Runner waits a little
		// before it calls Claim again after an error.
		g.more = true
		if len(g.waiters) > 0 {
			signal(g.waiters[0])
		}
		return p, fmt.Errorf("pgstore: claim: %w", err)
	}
	if len(tasks) == n || g.events != seen {
		g.more = true
	}
	g.nextDue = next
	// First come, first served, among the waiters still waiting: one
	// whose ctx has ended (the leader's too) is passed over, and leaves on
	// its own with nothing, so that a Claim whose ctx has ended never
	// returns a task.
	var unclaimed []taskqueue.Task
	i := 0
	for _, t := range tasks {
		for i < len(g.waiters) && g.waiters[i].ctx.Err() != nil {
			i++
		}
		if i == len(g.waiters) {
			unclaimed = append(unclaimed, t)
			continue
		}
		h := g.waiters[i]
		g.waiters = slices.Delete(g.waiters, i, i+1)
		h.task, h.got = t, true
		signal(h)
	}
	if len(g.waiters) > 0 {
		signal(g.waiters[0])
	}
	if len(unclaimed) > 0 {
		// The waiters left while the statement ran: give the tasks back
		// as they were, due when they were due.
		s.mu.Unlock()
		s.unclaim(unclaimed)
		s.mu.Lock()
		g.more = true
	}
	s.dropIfIdle(g)
	return nil, nil
}

// claimBatch claims up to n due tasks of kinds and reports when the
// earliest pending task that is not yet due falls due (zero if none).
func (s *Store) claimBatch(ctx context.Context, kinds []string, n int) ([]taskqueue.Task, time.Time, error) {
	now := floorMicro(time.Now())
	var kindsArg any // NULL: any kind
	if kinds != nil {
		kindsArg = kinds
	}
	var (
		tasks []taskqueue.Task
		seqs  = map[string]int64{}
		next  pgtype.Timestamptz
	)
	err := queryRows(ctx, s.q, func(r rows) error {
		var ts taskScan
		var seq int64
		if err := r.Scan(append(ts.dest(), &seq, &next)...); err != nil {
			return err
		}
		if ts.info.ID == "" {
			return nil // the row of NULLs: nothing was due
		}
		t, err := ts.done()
		if err != nil {
			return err
		}
		seqs[t.ID] = seq
		tasks = append(tasks, t)
		return nil
	}, s.sql.claim, now, n, now.Add(s.opts.Lease), kindsArg)
	if err != nil {
		// The statement may have claimed tasks whose rows never arrived;
		// their leases lapse and the rescuer gives them back.
		return nil, time.Time{}, err
	}
	// First come, first served: the order the claim index walks.
	slices.SortFunc(tasks, func(a, b taskqueue.Task) int {
		return cmp.Or(a.RunAt.Compare(b.RunAt), cmp.Compare(seqs[a.ID], seqs[b.ID]))
	})
	return tasks, timeOf(next), nil
}

// unclaim returns tasks that were claimed for waiters who left: pending
// again, their attempt given back, due when they were. A failure leaves
// them to the rescuer.
func (s *Store) unclaim(tasks []taskqueue.Task) {
	for _, t := range tasks {
		req := &endReq{id: t.ID, claim: t.ClaimToken, status: "pending", runAt: t.RunAt, release: true}
		if _, err := s.ends.do(context.Background(), req); err != nil {
			s.opts.Logger.Warn("pgstore: give back a claimed task", "id", t.ID, "err", err)
		}
	}
}
