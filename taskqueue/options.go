package taskqueue

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"time"
)

// Defaults used for zero Options fields.
const (
	DefaultRetention        = time.Hour
	DefaultMaxAttempts      = 3
	DefaultProgressInterval = 100 * time.Millisecond
	DefaultMaxPayloadBytes  = 1 << 20
)

// Limits on Options fields and per-task options.
const (
	maxWorkers      = 10_000
	maxAttempts     = 1000
	maxKindLen      = 128
	maxUniqueKey    = 256
	maxListLimit    = 1000
	minPollInterval = 10 * time.Millisecond
	minSweepPeriod  = time.Second
	maxSweepPeriod  = time.Minute
)

// Options configures a Runner. The zero value consists entirely of defaults.
type Options struct {
	// Workers is how many tasks run at once, each on its own long-lived
	// goroutine. Defaults to runtime.GOMAXPROCS(0); at most 10,000.
	Workers int
	// QueueSize is the most tasks that may wait to run in the in-memory
	// store made when Store is nil (see MemoryOptions.QueueSize); Submit
	// beyond it is ErrQueueFull. Defaults to DefaultQueueSize. It must be
	// zero when Store is set: such a store enforces its own bound.
	QueueSize int
	// Retention is how long a finished task stays visible to Get, List,
	// Wait and Subscribe before it is dropped. Expiry is exact: a task
	// whose FinishedAt is Retention or longer ago is ErrNotFound at once,
	// and the Runner deletes such tasks from the store every
	// Retention/4, clamped between 1s and 1m. A MemoryStore also bounds
	// how many finished tasks it keeps (MemoryOptions.MaxFinished) and drops
	// the oldest early past it. Defaults to DefaultRetention.
	Retention time.Duration
	// MaxAttempts is how many attempts a task gets unless Submit says
	// otherwise. Defaults to DefaultMaxAttempts; at most 1000.
	MaxAttempts int
	// Timeout bounds each attempt unless Submit says otherwise: the
	// handler's ctx ends with a timeout cause, and an attempt that returns
	// an error after it is a failed attempt with a message saying so. Zero
	// means no limit.
	Timeout time.Duration
	// Backoff gives the delay before each retry; if it panics, the panic
	// is logged and DefaultBackoff's delay is used. Defaults to
	// DefaultBackoff.
	Backoff Backoff
	// ProgressInterval is the least time between two progress writes to the
	// store for one attempt; Job.Progress calls in between are coalesced
	// into the latest value, written when the interval is up. Defaults to
	// DefaultProgressInterval.
	ProgressInterval time.Duration
	// PollInterval, when not zero, makes Wait and Subscribe also re-read
	// their tasks from the store this often, to see changes made by other
	// processes that share the store. Zero, the default, means they see
	// the changes made through this Runner, which are all of them when one
	// Runner uses the store, as with the MemoryStore. At least 10ms.
	PollInterval time.Duration
	// MaxPayloadBytes bounds a task's encoded payload (Submit fails) and
	// encoded result (the task fails). Defaults to DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// Logger receives attempt failures (debug), panics (warn) and store
	// errors (error). Defaults to discarding everything.
	Logger *slog.Logger
	// Store holds the tasks. Defaults to a new MemoryStore of QueueSize.
	Store Store
	// OnFinish, when set, is called once with the final Info of each task
	// that reaches a terminal status through this Runner, on the goroutine
	// that finished it (a worker, the goroutine that recorded a worker's
	// attempt over a store other than a MemoryStore, or the caller of
	// Cancel), once the store holds that status. It must return quickly; a
	// panic in it is recovered and logged.
	OnFinish func(Info)
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	switch {
	case c.Workers < 0 || c.Workers > maxWorkers:
		return c, fmt.Errorf("taskqueue: Workers %d must be between 0 and %d", c.Workers, maxWorkers)
	case c.QueueSize < 0 || c.QueueSize > maxQueueSize:
		return c, fmt.Errorf("taskqueue: QueueSize %d must be between 0 and %d", c.QueueSize, maxQueueSize)
	case c.QueueSize != 0 && c.Store != nil:
		return c, errors.New("taskqueue: QueueSize applies to the default in-memory store only; configure the Store instead")
	case c.Retention < 0:
		return c, errors.New("taskqueue: negative Retention")
	case c.MaxAttempts < 0 || c.MaxAttempts > maxAttempts:
		return c, fmt.Errorf("taskqueue: MaxAttempts %d must be between 0 and %d", c.MaxAttempts, maxAttempts)
	case c.Timeout < 0:
		return c, errors.New("taskqueue: negative Timeout")
	case c.ProgressInterval < 0:
		return c, errors.New("taskqueue: negative ProgressInterval")
	case c.PollInterval < 0 || (c.PollInterval > 0 && c.PollInterval < minPollInterval):
		return c, fmt.Errorf("taskqueue: PollInterval %v must be zero or at least %v", c.PollInterval, minPollInterval)
	case c.MaxPayloadBytes < 0:
		return c, errors.New("taskqueue: negative MaxPayloadBytes")
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.MaxPayloadBytes == 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Store == nil {
		s, err := NewMemoryStore(MemoryOptions{QueueSize: c.QueueSize})
		if err != nil {
			return c, err
		}
		c.Store = s
	}
	return c, nil
}

// Backoff returns how long to wait before the retry that follows failed
// attempt number attempt (1 for the first). A negative result is treated as
// zero.
type Backoff func(attempt int) time.Duration

// DefaultBackoff is ExponentialBackoff(time.Second, 10*time.Minute): about
// 1s, 2s, 4s … before the 2nd, 3rd, 4th … attempt, never above 10 minutes.
var DefaultBackoff = ExponentialBackoff(time.Second, 10*time.Minute)

// ExponentialBackoff returns a Backoff whose delay doubles with each failed
// attempt, from base up to limit, with "equal jitter": the delay after
// attempt n is uniformly random in [d/2, d] where d = min(limit,
// base·2^(n-1)). The jitter spreads retries of tasks that failed together.
// It panics if base is not positive or limit is below base, since both are
// the caller's constants.
func ExponentialBackoff(base, limit time.Duration) Backoff {
	if base <= 0 || limit < base {
		panic("taskqueue: ExponentialBackoff needs 0 < base <= limit")
	}
	return func(attempt int) time.Duration {
		d := limit
		if attempt < 1 {
			attempt = 1
		}
		if attempt <= 62 && base <= limit>>(attempt-1) {
			d = base << (attempt - 1)
		}
		half := d / 2
		return half + rand.N(d-half+1)
	}
}

// SubmitOption changes how one task is run; see MaxAttempts, Timeout,
// Delay, RunAt, UniqueKey and Metadata.
type SubmitOption func(*submitConfig)

type submitConfig struct {
	maxAttempts int
	timeout     time.Duration
	delay       time.Duration
	runAt       time.Time
	uniqueKey   string
	metadata    map[string]string
	err         error
}

func (c *submitConfig) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// MaxAttempts gives the task n attempts in all, overriding
// Options.MaxAttempts. n must be between 1 and 1000, or Submit fails.
func MaxAttempts(n int) SubmitOption {
	return func(c *submitConfig) {
		if n < 1 || n > maxAttempts {
			c.fail(fmt.Errorf("taskqueue: MaxAttempts(%d) must be between 1 and %d", n, maxAttempts))
			return
		}
		c.maxAttempts = n
	}
}

// Timeout bounds each attempt of the task, overriding Options.Timeout. d
// must be positive, or Submit fails.
func Timeout(d time.Duration) SubmitOption {
	return func(c *submitConfig) {
		if d <= 0 {
			c.fail(fmt.Errorf("taskqueue: Timeout(%v) must be positive", d))
			return
		}
		c.timeout = d
	}
}

// Delay makes the task due d from now instead of at once. d must not be
// negative, or Submit fails.
func Delay(d time.Duration) SubmitOption {
	return func(c *submitConfig) {
		if d < 0 {
			c.fail(fmt.Errorf("taskqueue: Delay(%v) must not be negative", d))
			return
		}
		c.delay, c.runAt = d, time.Time{}
	}
}

// RunAt makes the task due at t; a t in the past means at once. A zero t
// makes Submit fail.
func RunAt(t time.Time) SubmitOption {
	return func(c *submitConfig) {
		if t.IsZero() {
			c.fail(errors.New("taskqueue: RunAt needs a non-zero time"))
			return
		}
		c.runAt, c.delay = t, 0
	}
}

// UniqueKey deduplicates the task: while a pending or running task of the
// same kind holds key, Submit with the same key returns that task instead
// of a new one. Keys are scoped to their kind, so tasks of two kinds may
// hold one key. Once the task finishes, the key is free again. key must be 1 to 256
// bytes, or Submit fails.
func UniqueKey(key string) SubmitOption {
	return func(c *submitConfig) {
		if key == "" || len(key) > maxUniqueKey {
			c.fail(fmt.Errorf("taskqueue: UniqueKey must be 1 to %d bytes", maxUniqueKey))
			return
		}
		c.uniqueKey = key
	}
}
