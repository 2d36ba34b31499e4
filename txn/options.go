package txn

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Defaults used by Do when no option says otherwise.
const (
	// DefaultMaxAttempts is how many times Do runs the outermost fn, the
	// first attempt included, before it returns a retryable error.
	DefaultMaxAttempts = 10
	// DefaultBackoffBase is the wait before the first retry; it doubles for
	// each retry after that.
	DefaultBackoffBase = 5 * time.Millisecond
	// DefaultBackoffMax caps the wait between two attempts.
	DefaultBackoffMax = time.Second
)

// An Option changes how Do runs. Options that would be invalid (a zero
// attempt count, a nil callback) make Do return an error before it begins
// anything.
type Option func(*config) error

// config is the result of applying the options; its zero value is not
// ready, see newConfig.
type config struct {
	txOpts        sql.TxOptions
	isoSet, roSet bool
	maxAttempts   int
	base, max     time.Duration
	retryIf       []func(error) bool
	unknownIf     []func(error) bool
	onRetry       []func(attempt int, err error)
}

// Isolation sets the isolation level of the outermost transaction, passed to
// BeginTx. Drivers reject levels they do not support when the transaction
// begins (SQLite's modernc driver ignores the level: SQLite transactions are
// always serializable). In a nested Do it must match the outermost level, or
// be sql.LevelDefault, or Do returns ErrNestedOptions. A level outside the
// ones database/sql defines is an error.
func Isolation(level sql.IsolationLevel) Option {
	return func(c *config) error {
		if level < sql.LevelDefault || level > sql.LevelLinearizable {
			return fmt.Errorf("txn: unknown isolation level %d", int(level))
		}
		c.txOpts.Isolation = level
		c.isoSet = true
		return nil
	}
}

// ReadOnly begins the outermost transaction read-only, which Postgres and
// MySQL enforce by refusing writes (modernc's SQLite driver ignores it). In a
// nested Do it is
// accepted only when the outermost transaction is read-only too; otherwise
// Do returns ErrNestedOptions.
func ReadOnly() Option {
	return func(c *config) error {
		c.txOpts.ReadOnly = true
		c.roSet = true
		return nil
	}
}

// MaxAttempts sets how many times Do runs fn in all, the first attempt
// included, when attempts fail with a retryable error. Defaults to
// DefaultMaxAttempts; 1 turns retries off. n below 1 is an error. A nested
// Do ignores it: only the outermost transaction retries.
func MaxAttempts(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("txn: MaxAttempts(%d): must be at least 1", n)
		}
		c.maxAttempts = n
		return nil
	}
}

// RetryIf adds a classifier: Do also retries an attempt whose error makes
// retryable return true. The built-in cases ([Retryable]) always apply;
// several RetryIf options are or-ed. An outcome-unknown commit is never
// retried, whatever retryable says. A nil function is an error.
//
// For MySQL and MariaDB pass [github.com/asynckit/asynckit/txn/txnmysql.Retryable],
// since this package cannot see that driver's error type.
func RetryIf(retryable func(error) bool) Option {
	return func(c *config) error {
		if retryable == nil {
			return errors.New("txn: RetryIf(nil)")
		}
		c.retryIf = append(c.retryIf, retryable)
		return nil
	}
}

// CommitUnknownIf adds a classifier for commit errors: a failed COMMIT whose
// error makes unknown return true is reported as outcome-unknown
// (ErrCommitUnknown) and never retried. The built-in cases always apply; see
// [ErrCommitUnknown] and the package documentation. A nil function is an
// error.
func CommitUnknownIf(unknown func(error) bool) Option {
	return func(c *config) error {
		if unknown == nil {
			return errors.New("txn: CommitUnknownIf(nil)")
		}
		c.unknownIf = append(c.unknownIf, unknown)
		return nil
	}
}

// OnRetry registers fn, called before each retry, after the failed attempt
// has been rolled back and before the backoff wait, with the number of the
// attempt that failed (1 for the first) and its error. It runs on the
// goroutine that called Do, and the wait does not start before it returns.
// Several OnRetry options all run, in order. A nil fn is an error.
func OnRetry(fn func(attempt int, err error)) Option {
	return func(c *config) error {
		if fn == nil {
			return errors.New("txn: OnRetry(nil)")
		}
		c.onRetry = append(c.onRetry, fn)
		return nil
	}
}

// Backoff sets the wait between attempts: before retry n (1 for the first)
// Do waits a random duration between d/2 and d, where d is base·2^(n-1)
// capped at max. The jitter keeps colliding transactions from colliding
// again. Defaults to DefaultBackoffBase and DefaultBackoffMax. base must be
// above zero and max at least base.
func Backoff(base, max time.Duration) Option {
	return func(c *config) error {
		if base <= 0 {
			return fmt.Errorf("txn: Backoff base %v: must be above zero", base)
		}
		if max < base {
			return fmt.Errorf("txn: Backoff max %v is below base %v", max, base)
		}
		c.base, c.max = base, max
		return nil
	}
}

// defaults is the config of a Do without options.
var defaults = config{maxAttempts: DefaultMaxAttempts, base: DefaultBackoffBase, max: DefaultBackoffMax}

// newConfig builds a config from the defaults and opts.
func newConfig(opts []Option) (*config, error) {
	c := defaults
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("txn: nil Option")
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	return &c, nil
}
