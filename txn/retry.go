package txn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"time"
)

// sqlStater is the method Postgres drivers (pgx's *pgconn.PgError, lib/pq's
// *pq.Error) give their errors.
type sqlStater interface{ SQLState() string }

// sqliteCoder is the method modernc.org/sqlite gives its *sqlite.Error: the
// SQLite result code, extended codes included.
type sqliteCoder interface{ Code() int }

// SQLite primary result codes; an extended code keeps its primary code in
// the low byte (SQLITE_BUSY_SNAPSHOT is 517 = 5 | 2<<8).
const (
	sqliteBusy   = 5
	sqliteLocked = 6
)

// Retryable reports whether err, or any error it wraps, says the whole
// transaction should be run again, seen without importing any driver:
//   - Postgres SQLSTATE 40001 (serialization_failure) and 40P01
//     (deadlock_detected), through a SQLState() string method;
//   - SQLite SQLITE_BUSY and SQLITE_LOCKED, extended codes included (such as
//     SQLITE_BUSY_SNAPSHOT, which a deferred transaction gets when it tries
//     to write after another connection wrote), through a Code() int method.
//
// MySQL and MariaDB errors have no method to read their number through; see
// the subpackage txnmysql. Context errors, nil, and a commit whose outcome is
// unknown (ErrCommitUnknown) are not retryable.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, ErrCommitUnknown) {
		return false
	}
	var s sqlStater
	if errors.As(err, &s) {
		switch s.SQLState() {
		case "40001", "40P01":
			return true
		}
		return false
	}
	var c sqliteCoder
	if errors.As(err, &c) {
		switch c.Code() & 0xff {
		case sqliteBusy, sqliteLocked:
			return true
		}
	}
	return false
}

// commitLost reports whether a Commit error means the connection was lost,
// or the context ended, while COMMIT may already have reached the server.
func commitLost(err error) bool {
	switch {
	case errors.Is(err, driver.ErrBadConn),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, sql.ErrConnDone),
		// Commit on a transaction fn already ended itself: it may have
		// committed it.
		errors.Is(err, sql.ErrTxDone),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var s sqlStater
	if errors.As(err, &s) {
		state := s.SQLState()
		// Class 08 is connection exception; 57P01–57P03 are the server
		// shutting down or terminating the backend.
		if len(state) == 5 && state[:2] == "08" {
			return true
		}
		switch state {
		case "57P01", "57P02", "57P03":
			return true
		}
	}
	return false
}

// retryable reports whether c would retry an attempt that failed with err.
func (c *config) retryable(err error) bool {
	if errors.Is(err, ErrCommitUnknown) {
		return false
	}
	if Retryable(err) {
		return true
	}
	for _, f := range c.retryIf {
		if f(err) {
			return true
		}
	}
	return false
}

// commitUnknown reports whether a Commit error leaves the outcome unknown.
func (c *config) commitUnknown(err error) bool {
	if commitLost(err) {
		return true
	}
	for _, f := range c.unknownIf {
		if f(err) {
			return true
		}
	}
	return false
}

// backoff returns the wait before retry n (1 for the first): a random
// duration in [d/2, d] with d = base·2^(n-1), capped at max.
func (c *config) backoff(n int) time.Duration {
	d := c.base
	for i := 1; i < n && d < c.max; i++ {
		d *= 2
	}
	d = min(d, c.max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits for d or until ctx is done, whichever comes first, and
// returns ctx's cause in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
