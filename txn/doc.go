// Package txn runs functions in database/sql transactions that nest with
// savepoints, retry on serialization failures and deadlocks, and run hooks
// after the commit: Django's transaction.atomic and on_commit, and
// CockroachDB's ExecuteTx, over any database/sql driver. It imports no
// driver, and is tested against SQLite (modernc.org/sqlite), Postgres (pgx)
// and MariaDB (go-sql-driver/mysql).
//
//	err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
//		// use tx, or txn.From(ctx, db) in code that also runs outside Do
//		return nil
//	}, txn.Isolation(sql.LevelSerializable))
//
// # Transactions in the context
//
// [Do] begins a transaction, calls fn with a context that carries it, and
// commits when fn returns nil. An error from fn rolls back and comes back
// unchanged; a panic rolls back and goes on. Code that should join the
// caller's transaction when there is one takes the context and asks [From]
// for a [Querier]: the *sql.Tx in the context, or the *sql.DB outside any.
//
// # Nesting
//
// A Do whose context already carries a transaction opens a SAVEPOINT named
// sp_1, sp_2, … (a counter per transaction, so names are valid and unique at
// any depth). It releases the savepoint when fn succeeds; on an error or a
// panic it rolls back to it (and releases it, so that it does not linger),
// and returns the error to the enclosing fn, which may carry on. A batch of
// operations, each in its own nested Do, commits the ones that succeeded and
// reports the others. A nested Do must be given the same *sql.DB as the
// outermost ([ErrOtherDB] otherwise), cannot change the isolation level or
// read-only flag ([ErrNestedOptions]), and never retries by itself.
//
// # Retries
//
// When an attempt of the outermost transaction fails with an error
// [Retryable] recognises — Postgres SQLSTATE 40001 or 40P01, SQLite BUSY or
// LOCKED — or one a [RetryIf] function accepts, Do rolls back, waits, and
// runs fn again from the start: up to [DefaultMaxAttempts] attempts in all
// unless [MaxAttempts] says otherwise, with exponential backoff and jitter
// from [DefaultBackoffBase] to [DefaultBackoffMax] unless [Backoff] says
// otherwise. [OnRetry] observes each retry. fn must therefore be safe to run
// more than once: its effects outside the database belong in hooks. Such an
// error seen by a nested Do dooms the whole attempt, even if the enclosing
// fn ignores it, because the database may already have rolled the whole
// transaction back (MySQL does after a deadlock).
//
// MySQL and MariaDB report their errors through a driver type this package
// cannot see; pass [github.com/asynckit/asynckit/txn/txnmysql.Retryable] to
// RetryIf and [github.com/asynckit/asynckit/txn/txnmysql.ConnectionLost] to
// [CommitUnknownIf].
//
// # Commit failures
//
// A failed COMMIT is a [*CommitError], not fn's error. When the database
// refused the commit (a Postgres serialization failure at commit, a deferred
// constraint) the transaction was rolled back, and a retryable cause is
// retried. When the connection was lost or the context ended while COMMIT
// was on its way, nobody knows whether it was applied: the error matches
// [ErrCommitUnknown], no hook runs, and Do does not retry, since that could
// apply the work twice. Lost connections are recognised by driver.ErrBadConn,
// io.EOF, io.ErrUnexpectedEOF, net errors, context errors, sql.ErrConnDone,
// sql.ErrTxDone (fn ended the transaction itself), and Postgres SQLSTATE
// class 08 and 57P01–57P03, plus whatever CommitUnknownIf accepts. A context
// that has ended before COMMIT is sent rolls back and returns its error: that
// outcome is known.
//
// Whatever the failure, the connection does not go back to db's pool with
// a transaction still open on it. SQLite keeps a transaction open after
// its COMMIT fails with SQLITE_BUSY (in rollback-journal mode a COMMIT
// waits for readers to finish, and gives up after busy_timeout), and
// whether the driver then rolls it back differs between drivers and
// versions; database/sql would hand such a connection to the next user,
// whose statements would run inside the dead transaction. Do therefore
// runs each transaction on a connection of its own, and after a failed
// COMMIT or ROLLBACK sends ROLLBACK itself: when that succeeds the
// connection goes back to the pool, and otherwise, or when the outcome is
// unknown, it is closed. A refused COMMIT is a known [*CommitError], and a
// BUSY one is retried like any other.
//
// # Hooks
//
// [AfterCommit] runs a function once the outermost transaction has
// committed; [AfterRollback] once the work it follows has been rolled back.
// Hooks registered inside a savepoint that is rolled back are dropped with
// it (its AfterRollback hooks then run), hooks from a failed attempt never
// run as commit hooks, and a hook that panics neither undoes the commit nor
// stops the others: Do reports it as a [*HookError]. Outside any
// transaction AfterCommit runs at once, since autocommit has already
// committed the work before it.
//
// Hooks receive the context given to the outermost Do, which carries no
// transaction, rather than taking no argument as DESIGN.md sketched: a hook
// that invalidates a Redis cache or publishes a message needs a context,
// and the one fn received would hand From a transaction that has ended.
//
// # Databases
//
// SQLite allows one writer at a time. A transaction that reads and then
// writes should take the write lock at BEGIN: open the database with
// modernc's _txlock=immediate DSN parameter and set a busy_timeout.
// Otherwise its first write fails with SQLITE_BUSY at once when another
// connection holds the lock (SQLite cannot wait there without risking a
// deadlock); Do retries that, but under heavy contention a transaction can
// lose every attempt. modernc's driver ignores [Isolation] (SQLite
// transactions are serializable) and [ReadOnly].
//
// On Postgres, run read-then-write transactions at serializable isolation
// and let Do retry, or lock the rows with SELECT … FOR UPDATE. On MySQL and
// MariaDB, lock them with SELECT … FOR UPDATE; deadlocks (1213) and lock
// wait timeouts (1205) are then retried.
//
// # Cost
//
// Without options Do allocates two small objects on top of BeginTx and
// Commit (the state, which is also the context fn receives, and the
// *sql.Conn the transaction runs on), and a nested Do allocates nothing
// for the first 64 savepoints of a transaction. A failed COMMIT or
// ROLLBACK costs one more ROLLBACK, and on SQLite usually a reconnect. The
// benchmarks BenchmarkDo and BenchmarkNested compare both with hand-written
// BeginTx, SAVEPOINT, RELEASE and Commit.
package txn
