package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/asynckit/asynckit/txn"
)

// Timing of the listener of user writes.
const (
	// notePing is how long the listening connection may stay silent before
	// it is pinged, so that a connection that died without a word is found
	// out.
	notePing = 5 * time.Second
	// notePingTimeout bounds that ping.
	notePingTimeout = 2 * time.Second
	// noteRetryFirst and noteRetryMax bound the waits between reconnections.
	noteRetryFirst, noteRetryMax = 100 * time.Millisecond, 5 * time.Second
	// maxNotePayload keeps a notification's payload under Postgres's 8000
	// bytes: a write to more users sends several.
	maxNotePayload = 7000
)

// userNotes carries the writes to users between instances that share a
// Postgres database without Redis: a write sends the ids of its users by
// NOTIFY in its transaction, which Postgres delivers to every listening
// session when it commits, and each instance holds one connection that
// LISTENs and drops its copies of the users it hears of. A payload is the
// sending instance's token, a colon and the ids, so that an instance skips
// its own writes: it dropped their copies when they committed, and a late
// echo would only drop copies loaded since.
type userNotes struct {
	db      *sql.DB
	channel string
	token   string // this instance's
	log     *slog.Logger
	onIDs   func(ids []int64) // drop these users' copies
	onReset func()            // drop every copy: notifications may have been missed
	up      atomic.Bool       // LISTEN is in effect

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newUserNotes starts listening on the channel of the database's current
// schema (so that services in other schemas of the database are not
// heard), and waits, within ctx, until it listens: a cache that starts
// listening only later would be bypassed until then.
func newUserNotes(ctx context.Context, db *sql.DB, onReset func(), onIDs func([]int64), log *slog.Logger) (*userNotes, error) {
	var schema string
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, err
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	n := &userNotes{db: db, channel: fmt.Sprintf("asynckit_users_%016x", h.Sum64()), token: rand.Text(),
		log: log, onIDs: onIDs, onReset: onReset}
	lctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	ready := make(chan struct{})
	n.wg.Add(1)
	go n.listen(lctx, ready)
	select {
	case <-ready:
		return n, nil
	case <-ctx.Done():
		n.close()
		return nil, fmt.Errorf("listen for user writes: %w", ctx.Err())
	}
}

// listening reports whether notifications are being received: while they
// are not, the cache must be bypassed.
func (n *userNotes) listening() bool { return n.up.Load() }

// notify sends the ids of changes on q, which is the writing transaction.
func (n *userNotes) notify(ctx context.Context, q txn.Querier, changes []userChange) error {
	var b strings.Builder
	send := func() error {
		if b.Len() == 0 {
			return nil
		}
		_, err := q.ExecContext(ctx, `SELECT pg_notify($1, $2)`, n.channel, n.token+":"+b.String())
		b.Reset()
		return err
	}
	for _, ch := range changes {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(ch.id, 10))
		if b.Len() >= maxNotePayload {
			if err := send(); err != nil {
				return err
			}
		}
	}
	return send()
}

// listen keeps a LISTEN connection until ctx ends, reconnecting with
// backoff. ready is closed once LISTEN first takes effect.
func (n *userNotes) listen(ctx context.Context, ready chan struct{}) {
	defer n.wg.Done()
	delay := noteRetryFirst
	for {
		err := n.listenOnce(ctx, ready)
		n.up.Store(false)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("the listener of user writes lost its connection; users are read from the database until it is back", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		delay = min(2*delay, noteRetryMax)
	}
}

// listenOnce holds one connection of the pool, never to be returned to it,
// until it fails or ctx ends.
func (n *userNotes) listenOnce(ctx context.Context, ready chan struct{}) error {
	c, err := n.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var ferr error
	_ = c.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			ferr = fmt.Errorf("LISTEN needs pgx's database/sql driver, not %T", dc)
		} else {
			ferr = n.receive(ctx, sc.Conn(), ready)
		}
		return driver.ErrBadConn // closed rather than pooled: it has LISTEN on it
	})
	return ferr
}

// receive listens on conn and passes on what it hears.
func (n *userNotes) receive(ctx context.Context, conn *pgx.Conn, ready chan struct{}) error {
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{n.channel}.Sanitize()); err != nil {
		return err
	}
	// Writes made while no one listened were missed.
	n.onReset()
	n.up.Store(true)
	select {
	case <-ready:
	default:
		close(ready)
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, notePing)
		note, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && wctx.Err() != nil:
			pctx, cancel := context.WithTimeout(ctx, notePingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		from, list, _ := strings.Cut(note.Payload, ":")
		if from == n.token {
			continue
		}
		var ids []int64
		for f := range strings.SplitSeq(list, ",") {
			if id, err := strconv.ParseInt(f, 10, 64); err == nil {
				ids = append(ids, id)
			}
		}
		n.onIDs(ids)
	}
}

// close stops listening and waits for the listener.
func (n *userNotes) close() {
	n.cancel()
	n.wg.Wait()
}
