package txn

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// ctxKey is the context key under which Do's context answers with the
// *state of the transaction fn runs in.
type ctxKey struct{}

// state is one attempt of an outermost transaction, shared by every nested
// Do inside it. It is also the context fn receives: the context given to
// Do, answering Value(ctxKey{}) with itself, so that carrying the
// transaction costs no allocation beyond the state.
type state struct {
	context.Context // the context given to the outermost Do

	db  *sql.DB
	tx  *sql.Tx
	cfg *config // the outermost Do's options: isolation, classifiers

	mu     sync.Mutex
	hooks  []hook
	nextSP int   // the last savepoint number used
	doomed error // a retryable error seen by a nested Do: the attempt must not commit
	done   bool
}

// hook is a function registered with AfterCommit or AfterRollback.
type hook struct {
	fn       func(context.Context)
	onCommit bool
}

// Do runs fn in a transaction on db and returns fn's error.
//
// When ctx carries no transaction, Do begins one with the options'
// isolation level and read-only flag, calls fn with a ctx that carries it,
// and commits when fn returns nil. An error from fn rolls back and is
// returned unchanged. A panic (or runtime.Goexit) in fn rolls back, and the
// panic then goes on. A failed COMMIT is returned as a *CommitError, which
// matches ErrCommitUnknown when the outcome is unknown. When an attempt fails
// with a retryable error ([Retryable], or one accepted by [RetryIf]) Do rolls
// back, waits (see [Backoff]) and runs fn again, up to [MaxAttempts] times in
// all; then it returns the last error unchanged. A known commit failure is
// retried like any other error; an unknown one never is. Hooks registered in
// a failed attempt never run as commit hooks. After the commit Do runs the
// AfterCommit hooks, and returns a *HookError if any of them panicked.
//
// When ctx already carries a transaction, Do nests: it opens a savepoint,
// calls fn with the same ctx and *sql.Tx, and releases the savepoint on
// success. On error or panic it rolls back to the savepoint only (and
// releases it), drops the hooks registered since, and returns the error to
// the enclosing fn, which may carry on. A nested Do never retries by itself:
// it ignores MaxAttempts, RetryIf, OnRetry and Backoff. An error the
// outermost Do would retry dooms the whole transaction: the nested Do
// returns it without touching the savepoint (MySQL has already rolled the
// whole transaction back after a deadlock), and the outermost Do then rolls
// back and retries even if fn swallowed the error. A different db is
// ErrOtherDB; an isolation level or read-only flag that differs from the
// outermost transaction's is ErrNestedOptions. Nested Do calls on one
// transaction must not run concurrently.
//
// The outermost transaction runs on a connection Do takes from db's pool
// for it, and no connection goes back to the pool with a transaction open
// on it: after a COMMIT or ROLLBACK that failed, Do sends a ROLLBACK of its
// own and returns the connection only if that succeeds, and otherwise
// closes it, as it does after a commit whose outcome is unknown. (SQLite
// keeps the transaction open after COMMIT fails with SQLITE_BUSY, and not
// every driver rolls it back.) The caller sees the same errors either way.
//
// A nil ctx, db or fn, or an invalid option, is an error returned before
// anything begins. Without options the cost over a hand-written
// BeginTx/Commit is two small allocations (the state and the *sql.Conn); a
// nested Do adds none for the first 64 savepoints of a transaction.
func Do(ctx context.Context, db *sql.DB, fn func(ctx context.Context, tx *sql.Tx) error, opts ...Option) error {
	if ctx == nil {
		return errors.New("txn: nil context")
	}
	if db == nil {
		return errors.New("txn: nil *sql.DB")
	}
	if fn == nil {
		return errors.New("txn: nil fn")
	}
	// Options are functions that Do cannot see into, so what they are
	// given lives on the heap; a call without options shares the defaults
	// and allocates nothing for them. A config is never changed once built.
	cfg := &defaults
	if len(opts) > 0 {
		var err error
		if cfg, err = newConfig(opts); err != nil {
			return err
		}
	}
	if st, ok := ctx.Value(ctxKey{}).(*state); ok {
		return st.nested(ctx, db, fn, cfg)
	}
	for attempt := 1; ; attempt++ {
		hooks, retry, err := run(ctx, db, fn, cfg)
		if err == nil {
			return runHooks(ctx, hooks, true)
		}
		if !retry || attempt >= cfg.maxAttempts || ctx.Err() != nil {
			return err
		}
		for _, f := range cfg.onRetry {
			f(attempt, err)
		}
		if werr := sleep(ctx, cfg.backoff(attempt)); werr != nil {
			return fmt.Errorf("txn: %w while waiting to retry after: %w", werr, err)
		}
	}
}

// run makes one attempt of the outermost transaction. On success it returns
// the hooks registered in it, whose commit hooks are still to run; on
// failure it reports whether the attempt may be retried.
func run(ctx context.Context, db *sql.DB, fn func(context.Context, *sql.Tx) error, cfg *config) ([]hook, bool, error) {
	var txOpts *sql.TxOptions
	if cfg.isoSet || cfg.roSet {
		txOpts = &cfg.txOpts
	}
	// The transaction runs on a connection of its own rather than through
	// db.BeginTx, so that Do decides where the connection goes afterwards:
	// database/sql would put it back in the pool after a failed COMMIT or
	// ROLLBACK even if the transaction were still open on it.
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, cfg.retryable(err), fmt.Errorf("txn: begin: %w", err)
	}
	tx, err := conn.BeginTx(ctx, txOpts)
	if err != nil {
		// A BEGIN that failed opened nothing. SQLite reports a busy
		// database here when the transaction begins IMMEDIATE, so a
		// failed BEGIN may be retried too.
		_ = conn.Close()
		return nil, cfg.retryable(err), fmt.Errorf("txn: begin: %w", err)
	}
	st := &state{Context: ctx, db: db, tx: tx, cfg: cfg}
	returned := false
	defer func() {
		if returned {
			return
		}
		// fn panicked or called runtime.Goexit: roll back and let it go on.
		// A panicking rollback hook cannot be reported here; it is dropped.
		hooks, _ := st.end()
		rollback(ctx, conn, tx)
		_ = runHooks(ctx, hooks, false)
	}()
	err = fn(st, tx)
	returned = true

	hooks, doomed := st.end()
	if err == nil && doomed != nil {
		err = doomed
	}
	if err == nil && ctx.Err() != nil {
		// database/sql rolls the transaction back once ctx ends; COMMIT
		// was never sent, so the outcome is known.
		err = fmt.Errorf("txn: context ended before commit: %w", context.Cause(ctx))
	}
	if err != nil {
		rollback(ctx, conn, tx)
		retry := cfg.retryable(err) || (doomed != nil && cfg.retryable(doomed))
		if herr := runHooks(ctx, hooks, false); herr != nil {
			err = errors.Join(err, herr)
		}
		return nil, retry, err
	}
	if err := tx.Commit(); err != nil {
		cerr := &CommitError{Err: err, Unknown: cfg.commitUnknown(err)}
		if cerr.Unknown {
			// The connection is lost, or COMMIT may still be on its way
			// on it: it must not serve anyone else.
			discard(conn)
			// Neither kind of hook may run: nobody knows which applies.
			return nil, false, cerr
		}
		// SQLite keeps the transaction open after a COMMIT refused with
		// SQLITE_BUSY, and drivers differ in whether they roll it back.
		release(ctx, conn)
		var out error = cerr
		if herr := runHooks(ctx, hooks, false); herr != nil {
			out = errors.Join(cerr, herr)
		}
		return nil, cfg.retryable(err), out
	}
	_ = conn.Close()
	return hooks, false, nil
}

// rollbackTimeout bounds the ROLLBACK that release sends on a connection
// whose transaction did not end cleanly.
const rollbackTimeout = 5 * time.Second

// rollback rolls tx back and returns conn to the pool, or, if the rollback
// failed, makes sure that no transaction is left open on conn first.
func rollback(ctx context.Context, conn *sql.Conn, tx *sql.Tx) {
	if err := tx.Rollback(); err != nil {
		// The transaction may still be open: the driver failed, or fn
		// ended the transaction itself with a COMMIT that failed.
		release(ctx, conn)
		return
	}
	_ = conn.Close()
}

// release returns conn to the pool after a COMMIT or ROLLBACK that failed,
// once a ROLLBACK of its own has succeeded on it, so that the connection
// is known to be outside any transaction; otherwise it discards conn. The
// extra ROLLBACK is harmless where the failure ended the transaction, as
// it does on Postgres and MySQL; where the driver has already rolled back
// (modernc's SQLite driver after a refused COMMIT), SQLite answers that no
// transaction is active and the connection is discarded, which costs a
// reconnect but never hands on an open transaction.
func release(ctx context.Context, conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		discard(conn)
		return
	}
	_ = conn.Close()
}

// discard closes conn's underlying connection instead of returning it to
// the pool. database/sql closes a connection for which Raw's function
// returns driver.ErrBadConn. If database/sql has closed conn already (it
// does when the transaction's context ends), there is nothing left to do.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// Value returns st for ctxKey{} and asks the context given to Do otherwise.
func (st *state) Value(key any) any {
	if key == (ctxKey{}) {
		return st
	}
	return st.Context.Value(key)
}

// String names the context for logs, as the context package's own do,
// without reading the state that other goroutines may be changing.
func (st *state) String() string {
	return fmt.Sprint(st.Context) + ".WithTransaction"
}

// end marks the transaction finished, so that later AfterCommit,
// AfterRollback and nested Do calls get ErrTxDone, and returns its hooks and
// the error that doomed it, if any.
func (st *state) end() (hooks []hook, doomed error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.done = true
	hooks, st.hooks = st.hooks, nil
	return hooks, st.doomed
}

// doom records err as the reason this attempt must not commit.
func (st *state) doom(err error) {
	st.mu.Lock()
	if st.doomed == nil {
		st.doomed = err
	}
	st.mu.Unlock()
}

// takeHooks removes and returns the hooks registered from index mark on.
func (st *state) takeHooks(mark int) []hook {
	st.mu.Lock()
	defer st.mu.Unlock()
	if mark >= len(st.hooks) {
		return nil
	}
	taken := st.hooks[mark:]
	st.hooks = st.hooks[:mark:mark]
	return taken
}

// nested runs fn inside a savepoint of st's transaction.
func (st *state) nested(ctx context.Context, db *sql.DB, fn func(context.Context, *sql.Tx) error, cfg *config) error {
	if db != st.db {
		return ErrOtherDB
	}
	outer := st.cfg.txOpts
	if cfg.isoSet && cfg.txOpts.Isolation != sql.LevelDefault && cfg.txOpts.Isolation != outer.Isolation {
		return fmt.Errorf("%w: isolation %v inside %v", ErrNestedOptions, cfg.txOpts.Isolation, outer.Isolation)
	}
	if cfg.roSet && !outer.ReadOnly {
		return fmt.Errorf("%w: read-only inside a read-write transaction", ErrNestedOptions)
	}
	st.mu.Lock()
	if st.done {
		st.mu.Unlock()
		return ErrTxDone
	}
	if st.doomed != nil {
		// The transaction is to be retried; running more statements in it
		// is wasted work, and in MySQL they would run outside it.
		err := st.doomed
		st.mu.Unlock()
		return err
	}
	st.nextSP++
	sp := savepointSQL(st.nextSP)
	mark := len(st.hooks)
	st.mu.Unlock()

	if _, err := st.tx.ExecContext(ctx, sp.save); err != nil {
		err = fmt.Errorf("txn: savepoint: %w", err)
		if st.cfg.retryable(err) {
			st.doom(err)
		}
		return err
	}
	returned := false
	defer func() {
		if !returned {
			// Panic or Goexit: undo this level only; the panic goes on to
			// the enclosing Do. A hook panicking now is dropped.
			_ = st.undo(ctx, sp, mark, nil)
		}
	}()
	err := fn(ctx, st.tx)
	returned = true

	if err != nil && st.cfg.retryable(err) {
		st.doom(err)
	}
	if doomed := st.doomedBy(); doomed != nil {
		// The outermost Do rolls the whole attempt back and runs this
		// level's AfterRollback hooks with the others; the savepoint may
		// be gone already, and RELEASE would be wasted work.
		if err == nil {
			err = doomed
		}
		return err
	}
	if err != nil {
		return st.undo(ctx, sp, mark, err)
	}
	if _, err := st.tx.ExecContext(ctx, sp.release); err != nil {
		// In Postgres a statement fn ran and then ignored leaves the
		// transaction aborted, and RELEASE fails; rolling back to the
		// savepoint recovers it.
		return st.undo(ctx, sp, mark, fmt.Errorf("txn: release savepoint: %w", err))
	}
	return nil
}

// undo rolls back to savepoint sp, runs the AfterRollback hooks registered
// since index mark and drops the AfterCommit ones, and returns err joined
// with whatever went wrong doing so.
func (st *state) undo(ctx context.Context, sp *savepoint, mark int, err error) error {
	if rerr := st.rollbackTo(ctx, sp); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if herr := runHooks(st.Context, st.takeHooks(mark), false); herr != nil {
		err = errors.Join(err, herr)
	}
	return err
}

// doomedBy returns the error that doomed the attempt, or nil.
func (st *state) doomedBy() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.doomed
}

// rollbackTo undoes the work since savepoint sp and then releases it, so that
// it does not linger. It runs even when ctx has ended. If it fails the
// transaction's state is unknown and it is doomed.
func (st *state) rollbackTo(ctx context.Context, sp *savepoint) error {
	ctx = context.WithoutCancel(ctx)
	if _, err := st.tx.ExecContext(ctx, sp.rollback); err != nil {
		err = fmt.Errorf("txn: rollback to savepoint: %w", err)
		st.doom(err)
		return err
	}
	if _, err := st.tx.ExecContext(ctx, sp.release); err != nil {
		err = fmt.Errorf("txn: release savepoint after rollback: %w", err)
		st.doom(err)
		return err
	}
	return nil
}

// savepoint holds the three statements for one savepoint name.
type savepoint struct{ save, release, rollback string }

// savepoints caches the statements for the first savepoints of a
// transaction, so that nesting does not allocate.
var savepoints = func() (s [65]savepoint) {
	for i := range s {
		s[i] = newSavepoint(i)
	}
	return s
}()

// savepointSQL returns the statements for savepoint number n (from 1): the
// name is sp_n, a valid identifier in every SQL dialect, unique within the
// transaction because n counts every savepoint it has opened.
func savepointSQL(n int) *savepoint {
	if n < len(savepoints) {
		return &savepoints[n]
	}
	sp := newSavepoint(n)
	return &sp
}

func newSavepoint(n int) savepoint {
	name := "sp_" + strconv.Itoa(n)
	return savepoint{
		save:     "SAVEPOINT " + name,
		release:  "RELEASE SAVEPOINT " + name,
		rollback: "ROLLBACK TO SAVEPOINT " + name,
	}
}
