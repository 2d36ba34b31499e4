package pgstore

import (
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults used for zero Options fields.
const (
	// DefaultSchema is the schema of a store whose Options.Schema is empty,
	// and the one Migrate creates when given "".
	DefaultSchema = "taskqueue"
	// DefaultLease is how long a claim holds its task without a heartbeat.
	DefaultLease = 30 * time.Second
	// DefaultPollInterval is how often an idle Claim looks for work that
	// no notification announced.
	DefaultPollInterval = time.Second
	// DefaultDeleteBatch is the most finished tasks one retention DELETE
	// removes.
	DefaultDeleteBatch = 1000
)

// Limits on Options fields.
const (
	minLease        = 100 * time.Millisecond
	minPollInterval = 10 * time.Millisecond
	maxDeleteBatch  = 100_000
)

// Options configures New. The zero value consists entirely of defaults.
type Options struct {
	// Schema is the Postgres schema that holds the store's tables, as
	// given to Migrate. Defaults to DefaultSchema.
	Schema string

	// Lease is how long a claim holds its task: the Runner renews it with
	// a heartbeat every third of it while the handler runs, and once it
	// has lapsed any instance's rescuer returns the task to pending (or
	// fails it, when its attempts are used up). A crashed worker's task
	// therefore runs again within about Lease plus RescueInterval. Defaults
	// to DefaultLease; at least 100ms.
	Lease time.Duration

	// RescueInterval is how often this store looks for tasks whose lease
	// has lapsed. Every instance rescues; the rescue is one UPDATE that
	// skips rows other instances hold, so they never race. Defaults to
	// Lease/2.
	RescueInterval time.Duration

	// PollInterval is how often an idle Claim looks in the table for due
	// work that no notification announced: work inserted while the
	// listener was down, or by an instance whose NOTIFY was lost. Claims
	// also wake at once for tasks inserted, retried or rescued through
	// this store, for NOTIFY from other instances, and when the earliest
	// delayed task falls due. Defaults to DefaultPollInterval; at least
	// 10ms.
	PollInterval time.Duration

	// DeleteBatch is the most finished tasks one DELETE of
	// DeleteFinishedBefore removes; it deletes batch after batch, each in
	// its own short transaction, so retention never holds many locks for
	// long. Defaults to DefaultDeleteBatch; at most 100,000.
	DeleteBatch int

	// DisableListener turns LISTEN off: claims then learn of work inserted
	// by other processes only by polling every PollInterval, while work
	// inserted through this store still wakes them at once. A store whose
	// connections go through a transaction-pooling proxy, or a test in a
	// testing/synctest bubble (where a goroutine waiting on the network
	// stops the bubble's clock), sets it. Defaults to false: listening.
	DisableListener bool

	// ListenConfig, when set, is where the store opens its own connection
	// for LISTEN, for example straight to Postgres when the pool goes
	// through a proxy that does not keep sessions. Defaults to holding one
	// connection of Pool, or of the *sql.DB when Pool is nil, for as long
	// as the store is open.
	ListenConfig *pgx.ConnConfig

	// Pool, when set, carries the store's queries natively through pgx:
	// claims, heartbeats, attempt endings, reads, retention, and inserts
	// made outside a transaction. An Insert whose ctx carries a transaction
	// on the *sql.DB given to New still runs in it (see package txn).
	// Defaults to running every query through the *sql.DB.
	Pool *pgxpool.Pool

	// Logger receives listener reconnects (warn) and failed background
	// rescues (error). Defaults to discarding everything.
	Logger *slog.Logger
}

func (o *Options) withDefaults() (Options, error) {
	c := *o
	if err := c.validate(); err != nil {
		return c, err
	}
	if c.Schema == "" {
		c.Schema = DefaultSchema
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.RescueInterval == 0 {
		c.RescueInterval = c.Lease / 2
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.DeleteBatch == 0 {
		c.DeleteBatch = DefaultDeleteBatch
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func (o *Options) validate() error {
	switch {
	case o.Schema != "" && validSchema(o.Schema) != nil:
		return validSchema(o.Schema)
	case o.Lease != 0 && o.Lease < minLease:
		return errors.New("pgstore: Lease must be zero or at least 100ms")
	case o.RescueInterval < 0:
		return errors.New("pgstore: negative RescueInterval")
	case o.PollInterval != 0 && o.PollInterval < minPollInterval:
		return errors.New("pgstore: PollInterval must be zero or at least 10ms")
	case o.DeleteBatch < 0 || o.DeleteBatch > maxDeleteBatch:
		return errors.New("pgstore: DeleteBatch must be between 0 and 100,000")
	case o.ListenConfig != nil && o.DisableListener:
		return errors.New("pgstore: ListenConfig is set but DisableListener turns LISTEN off")
	}
	return nil
}
