// Package txnmysql teaches [github.com/asynckit/asynckit/txn] the errors of
// MySQL and MariaDB through github.com/go-sql-driver/mysql, whose
// *mysql.MySQLError carries its number in a field that no interface can
// reach, so the core package, which imports no driver, cannot see it.
//
// Pass both classifiers to every outermost Do on a MySQL or MariaDB
// database:
//
//	err := txn.Do(ctx, db, fn,
//		txn.RetryIf(txnmysql.Retryable),
//		txn.CommitUnknownIf(txnmysql.ConnectionLost))
//
// # Retries
//
// [Retryable] accepts error 1213 (ER_LOCK_DEADLOCK), 1205
// (ER_LOCK_WAIT_TIMEOUT) and 1020 (ER_CHECKREAD, which MariaDB returns when
// innodb_snapshot_isolation is on and a row changed since the transaction's
// snapshot). They differ in what the server has undone: a deadlock rolls
// back the whole transaction, while a lock wait timeout, by default
// (innodb_rollback_on_timeout off), rolls back only the statement that
// waited. Running the whole fn again from a fresh transaction is right for
// both: txn rolls back what is left before it retries, and a nested Do that
// sees one of them does not try to roll back to its savepoint, which a
// deadlock has already destroyed.
package txnmysql

import (
	"errors"

	"github.com/go-sql-driver/mysql"
)

// MySQL and MariaDB server error numbers.
const (
	erCheckRead       = 1020
	erLockWaitTimeout = 1205
	erLockDeadlock    = 1213
	erConnKilled      = 1927 // ER_CONNECTION_KILLED
)

// Retryable reports whether err, or an error it wraps, is a
// *mysql.MySQLError numbered 1213, 1205 or 1020: a transaction that lost a
// lock conflict and should be run again whole. It is meant for
// txn.RetryIf; nil is not retryable.
func Retryable(err error) bool {
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case erLockDeadlock, erLockWaitTimeout, erCheckRead:
		return true
	}
	return false
}

// ConnectionLost reports whether a COMMIT error from go-sql-driver/mysql
// means the connection failed after the statement may have reached the
// server: mysql.ErrInvalidConn (the driver's "invalid connection", which,
// unlike driver.ErrBadConn, it returns once something was sent) or error
// 1927, the connection killed by the server. It is meant for
// txn.CommitUnknownIf; nil is not a lost connection.
func ConnectionLost(err error) bool {
	if errors.Is(err, mysql.ErrInvalidConn) {
		return true
	}
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == erConnKilled
}
