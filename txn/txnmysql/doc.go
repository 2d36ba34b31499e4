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
