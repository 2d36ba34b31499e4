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
