package pgstore

import (
	"context"
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// Notifications: every statement that makes work due (an insert, a retry,
// a release, a rescue) sends "w<instance><kind>" on the schema's channel,
// and a cancel of a running task sends "c<instance><id>". instance is the
// sending Store's own 16 hex digits, so that a store skips what it sent
// itself: it has already woken its own claims and watchers directly.
const instanceLen = 16

// Listener reconnection backs off from the first delay to the last.
const (
	relistenFirst = 100 * time.Millisecond
	relistenMax   = 5 * time.Second
)

// listen keeps a LISTEN connection open until ctx ends, reconnecting with
// backoff when it drops. While it is down, claims poll every PollInterval.
func (s *Store) listen(ctx context.Context) {
	defer s.wg.Done()
	delay := relistenFirst
	for {
		connected, err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if connected {
			delay = relistenFirst
		}
		s.opts.Logger.Warn("pgstore: listener lost its connection; claims poll until it is back", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, relistenMax)
	}
}

// listenOnce holds one LISTEN connection until it fails or ctx ends. It
// reports whether LISTEN took effect.
func (s *Store) listenOnce(ctx context.Context) (connected bool, err error) {
	err = s.withListenConn(ctx, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.chann}.Sanitize()); err != nil {
			return err
		}
		connected = true
		s.listening.Store(true)
		defer s.listening.Store(false)
		// Whatever was announced while no one listened was missed: look.
		s.wake("")
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				return err
			}
			s.dispatch(n.Payload)
		}
	})
	return connected, err
}

// withListenConn calls fn with a connection of its own, which is closed,
// never returned to a pool, once fn returns: it has LISTEN on it.
func (s *Store) withListenConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	switch {
	case s.opts.ListenConfig != nil:
		conn, err := pgx.ConnectConfig(ctx, s.opts.ListenConfig)
		if err != nil {
			return err
		}
		defer closeConn(conn)
		return fn(conn)
	case s.opts.Pool != nil:
		pc, err := s.opts.Pool.Acquire(ctx)
		if err != nil {
			return err
		}
		conn := pc.Hijack()
		defer closeConn(conn)
		return fn(conn)
	}
	c, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var ferr error
	err = c.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			ferr = fmt.Errorf("pgstore: LISTEN needs the *sql.DB to use pgx's driver (github.com/jackc/pgx/v5/stdlib), not %T; or set ListenConfig or DisableListener", dc)
			return ferr
		}
		ferr = fn(sc.Conn())
		// Bad: database/sql closes the connection rather than pool it.
		return driver.ErrBadConn
	})
	if ferr != nil {
		return ferr
	}
	return err
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// dispatch acts on one notification payload.
func (s *Store) dispatch(payload string) {
	if len(payload) < 1+instanceLen || payload[1:1+instanceLen] == s.instance {
		return
	}
	rest := payload[1+instanceLen:]
	switch payload[0] {
	case 'w':
		s.wake(rest)
	case 'c':
		s.cancelRequested(rest)
	}
}

// Listening reports whether the store's LISTEN connection is up: while it
// is not, claims learn of work from other instances only by polling. A
// store with DisableListener set never listens.
func (s *Store) Listening() bool { return s.listening.Load() }
