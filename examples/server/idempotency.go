package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/txn"
)

const (
	// idempotencyHeader is the request header of draft-ietf-httpapi-idempotency-key-header.
	idempotencyHeader = "Idempotency-Key"
	// maxIdempotencyKey is the longest key accepted, in bytes.
	maxIdempotencyKey = 255
	// idempotencyTTL is how long a key and its answer are kept.
	idempotencyTTL = 24 * time.Hour
	// reapEvery is how often expired keys are deleted.
	reapEvery = 10 * time.Minute
)

// idempotency makes POST and PUT requests that carry an Idempotency-Key
// safe to retry, with Stripe's semantics, keeping the keys in the primary
// database:
//
//   - The key is claimed with INSERT … ON CONFLICT on the table's primary
//     key (client, key), in the same transaction as the request's own
//     writes and its stored answer. Either all three commit, or none does:
//     a request that fails or rolls back frees its key, so the client may
//     retry it with the same key.
//   - A request whose key holds a stored answer is not run again; it gets
//     the stored status and body, byte for byte, and Idempotent-Replayed: true.
//   - The key is scoped to the client (X-Client-ID, else its IP) and
//     recorded with the method, the route and a fingerprint of the decoded
//     body. The same key with a different request is a 422 and runs nothing.
//   - On Postgres, a duplicate that arrives while the first is still
//     running is a 409 with Retry-After: a transaction-scoped advisory lock
//     on the key tells that at once, without waiting on the first. SQLite
//     runs one write transaction at a time, so there the duplicate waits
//     for the first to commit and then gets its answer replayed.
//   - Keys are kept for 24 hours, then deleted by a reaper; an expired key
//     that is still in the table is claimed afresh.
type idempotency struct {
	store     *store
	clientKey ratelimit.KeyFunc
	log       *slog.Logger

	stop chan struct{}
	wg   sync.WaitGroup
}

func newIdempotency(st *store, clientKey ratelimit.KeyFunc, log *slog.Logger) *idempotency {
	return &idempotency{store: st, clientKey: clientKey, log: log, stop: make(chan struct{})}
}

// do runs respond for request r to the route pattern under key, or
// answers with what an earlier request under key stored. body is the
// request's decoded body encoded again, so that spelling differences in the
// JSON do not count.
func (i *idempotency) do(ctx context.Context, r *http.Request, pattern, key string, body []byte,
	respond func(ctx context.Context) (int, []byte, error)) (status int, answer []byte, replayed bool, err error) {
	if key == "" || len(key) > maxIdempotencyKey || strings.ContainsFunc(key, func(c rune) bool { return c < ' ' || c > '~' }) {
		return 0, nil, false, invalid(fieldError{Field: idempotencyHeader, Message: "must be one header of 1 to 255 printable ASCII characters"})
	}
	client, err := i.clientKey(r)
	if err != nil {
		return 0, nil, false, newProblem(probBadRequest, "%v", err)
	}
	method, path, _ := strings.Cut(pattern, " ")
	sum := sha256.Sum256([]byte(pattern + "\n" + string(body)))
	fingerprint := hex.EncodeToString(sum[:])

	err = txn.Do(ctx, i.store.db, func(ctx context.Context, tx *sql.Tx) error {
		status, answer, replayed = 0, nil, false
		if i.store.dialect == "postgres" {
			var locked bool
			if err := tx.QueryRowContext(ctx, `SELECT pg_try_advisory_xact_lock($1)`, keyLock(client, key)).Scan(&locked); err != nil {
				return err
			}
			if !locked {
				p := newProblem(probKeyInUse, "a request with this Idempotency-Key is still being processed")
				p.retryAfter = time.Second
				return p
			}
		}
		t := now()
		var claimed int
		err := tx.QueryRowContext(ctx, `
			INSERT INTO idempotency_keys (client_id, idem_key, method, route, fingerprint, status, body, created_at)
			VALUES ($1, $2, $3, $4, $5, 0, $6, $7)
			ON CONFLICT (client_id, idem_key) DO UPDATE
			   SET method = excluded.method, route = excluded.route, fingerprint = excluded.fingerprint,
			       status = 0, body = excluded.body, created_at = excluded.created_at
			 WHERE idempotency_keys.created_at < $8
			RETURNING 1`,
			client, key, method, path, fingerprint, []byte{}, t, t.Add(-idempotencyTTL)).Scan(&claimed)
		if errors.Is(err, sql.ErrNoRows) {
			// A live key: answer from what it stored.
			var storedMethod, storedRoute, storedFingerprint string
			if err := tx.QueryRowContext(ctx, `
				SELECT method, route, fingerprint, status, body FROM idempotency_keys
				 WHERE client_id = $1 AND idem_key = $2`, client, key).
				Scan(&storedMethod, &storedRoute, &storedFingerprint, &status, &answer); err != nil {
				return err
			}
			if storedFingerprint != fingerprint {
				return newProblem(probKeyReused, "this Idempotency-Key was first used for %s %s with another body", storedMethod, storedRoute)
			}
			replayed = true
			return nil
		}
		if err != nil {
			return err
		}
		status, answer, err = respond(ctx)
		if err != nil {
			return err // rolls the claim back with the rest: the key is free again
		}
		if answer == nil {
			answer = []byte{}
		}
		_, err = tx.ExecContext(ctx, `UPDATE idempotency_keys SET status = $1, body = $2 WHERE client_id = $3 AND idem_key = $4`,
			status, answer, client, key)
		return err
	})
	if err != nil {
		return 0, nil, false, err
	}
	if len(answer) == 0 {
		answer = nil
	}
	return status, answer, replayed, nil
}

// keyLock is the advisory lock id of a client's key: 63 bits of a hash,
// so that two keys share a lock only by a collision that makes one of them
// wait for a second.
func keyLock(client, key string) int64 {
	sum := sha256.Sum256([]byte(client + "\x00" + key))
	return int64(binary.BigEndian.Uint64(sum[:8]) >> 1)
}

// start deletes expired keys now and every reapEvery, until close.
func (i *idempotency) start() {
	i.wg.Add(1)
	go func() {
		defer i.wg.Done()
		tick := time.NewTicker(reapEvery)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if n, err := i.reap(ctx, time.Now().Add(-idempotencyTTL)); err != nil {
				i.log.Warn("reaping idempotency keys", "err", err)
			} else if n > 0 {
				i.log.Debug("reaped idempotency keys", "deleted", n)
			}
			cancel()
			select {
			case <-tick.C:
			case <-i.stop:
				return
			}
		}
	}()
}

// reap deletes the keys created before cutoff, a thousand at a time so that
// no statement holds locks for long, and returns how many it deleted.
func (i *idempotency) reap(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		res, err := i.store.db.ExecContext(ctx, `
			DELETE FROM idempotency_keys WHERE (client_id, idem_key) IN (
				SELECT client_id, idem_key FROM idempotency_keys WHERE created_at < $1 LIMIT 1000)`,
			cutoff.UTC())
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < 1000 {
			return total, nil
		}
	}
}

// close stops the reaper and waits for it.
func (i *idempotency) close() {
	close(i.stop)
	i.wg.Wait()
}
