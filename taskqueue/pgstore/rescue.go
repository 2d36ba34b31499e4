package pgstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
)

// rescueBatch bounds how many lapsed tasks one rescue statement takes.
const rescueBatch = 1000

// rescueLoop runs Rescue every RescueInterval, with up to a quarter of it
// added at random so that instances started together do not rescue in
// step, until ctx ends.
func (s *Store) rescueLoop(ctx context.Context) {
	defer s.wg.Done()
	every := func() time.Duration {
		return s.opts.RescueInterval + rand.N(s.opts.RescueInterval/4+1)
	}
	t := time.NewTimer(every())
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if _, err := s.Rescue(ctx); err != nil && ctx.Err() == nil {
			s.opts.Logger.Error("pgstore: rescue tasks whose lease lapsed", "err", err)
		}
		t.Reset(every())
	}
}

// Rescue does at once what the store does every RescueInterval: each
// running task whose lease has lapsed (its worker crashed, hung, or lost
// the database) goes back to pending, due now, with the lost attempt
// counted and an Error saying so; or fails, when that was its last
// attempt; or ends canceled, when its cancellation was requested. Claims
// of every instance are woken for the tasks it returns to pending. It
// returns how many tasks it rescued.
//
// Rescue takes the lapsed rows with FOR UPDATE SKIP LOCKED in batches of
// 1000, so any number of instances may run it at once without a leader:
// each task is rescued once. A worker whose claim was rescued learns it at
// its next update (ErrLeaseLost), and its outcome is dropped.
func (s *Store) Rescue(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.rescueOnce(ctx)
		total += n
		if err != nil || n < rescueBatch {
			return total, err
		}
	}
}

func (s *Store) rescueOnce(ctx context.Context) (int, error) {
	n := 0
	var kinds []string
	err := queryRows(ctx, s.q, func(r rows) error {
		var kind, status string
		var notified bool
		if err := r.Scan(&kind, &status, &notified); err != nil {
			return err
		}
		n++
		if status == "pending" {
			kinds = append(kinds, kind)
		}
		return nil
	}, s.sql.rescue, floorMicro(time.Now()), rescueBatch, taskqueue.ErrCanceled.Error(), s.chann, s.wakePrefix)
	if err != nil {
		return n, fmt.Errorf("pgstore: rescue: %w", err)
	}
	for _, k := range kinds {
		s.wake(k)
	}
	return n, nil
}
