package txn

import (
	"context"
	"errors"
	"runtime/debug"
)

// AfterCommit registers fn to run once, after the outermost transaction in
// ctx has committed, with the ctx given to that outermost Do (which carries
// no transaction: From returns the db in it).
//
// Hooks run in the order they were registered, on the goroutine that called
// Do, before Do returns. A hook registered in a nested Do whose savepoint is
// then rolled back is dropped with it, and all hooks are dropped when the
// transaction rolls back, when a failed attempt is retried (the retry
// registers its own), and when the commit outcome is unknown. A hook that
// panics does not undo the commit nor stop the hooks after it: Do returns a
// *HookError with Committed set.
//
// Outside any transaction fn runs at once, before AfterCommit returns,
// because the work before it has already been committed by autocommit: code
// that invalidates a cache after a write then behaves the same inside and
// outside Do. A panic is then returned as a *HookError.
//
// A nil ctx or fn is an error; so is a ctx whose transaction has ended
// (ErrTxDone). The hooks of one transaction are kept in memory until it
// ends: registering costs one slice append.
func AfterCommit(ctx context.Context, fn func(ctx context.Context)) error {
	return register(ctx, fn, true)
}

// AfterRollback registers fn to run once if the work done so far in the
// current (nested) transaction is undone: after ROLLBACK TO when the
// enclosing nested Do fails, or after the ROLLBACK of the outermost
// transaction, for every failed attempt and for a known commit failure. It
// is dropped when the outermost transaction commits or its outcome is
// unknown. It runs with the ctx given to the outermost Do. It is the place
// to undo side effects outside the database, such as a file written for a
// row that no longer exists.
//
// Hooks run in the order they were registered, every one even if some
// panic; the panics are joined to the error Do or the nested Do returns, as
// a *HookError. A hook that panics while fn itself is panicking is dropped,
// so that the original panic goes on.
//
// Outside any transaction nothing can roll back, so fn is dropped and
// AfterRollback returns nil. A nil ctx or fn is an error; so is a ctx whose
// transaction has ended (ErrTxDone).
func AfterRollback(ctx context.Context, fn func(ctx context.Context)) error {
	return register(ctx, fn, false)
}

func register(ctx context.Context, fn func(context.Context), onCommit bool) error {
	if ctx == nil {
		return errors.New("txn: nil context")
	}
	if fn == nil {
		return errors.New("txn: nil hook")
	}
	st, ok := ctx.Value(ctxKey{}).(*state)
	if !ok {
		if onCommit {
			return runHooks(ctx, []hook{{fn: fn, onCommit: true}}, true)
		}
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.done {
		return ErrTxDone
	}
	st.hooks = append(st.hooks, hook{fn: fn, onCommit: onCommit})
	return nil
}

// runHooks runs the hooks of one kind (commit or rollback) in order, each
// with its panic recovered, and returns a *HookError for the panics.
func runHooks(ctx context.Context, hooks []hook, committed bool) error {
	var panics []*PanicError
	for _, h := range hooks {
		if h.onCommit != committed {
			continue
		}
		if p := callHook(ctx, h.fn); p != nil {
			panics = append(panics, p)
		}
	}
	if panics == nil {
		return nil
	}
	return &HookError{Committed: committed, Panics: panics}
}

func callHook(ctx context.Context, fn func(context.Context)) (p *PanicError) {
	defer func() {
		if v := recover(); v != nil {
			p = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	fn(ctx)
	return nil
}
