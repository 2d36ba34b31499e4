// Package pgstore is a durable [taskqueue.Store] in Postgres: the Runners
// of every process whose store points at the same schema share one queue,
// a task outlives the process that submitted it, and a task whose worker
// crashed runs again elsewhere. It passes the conformance suite
// taskqueuetest.Run, like the in-memory store.
//
//	err := pgstore.Migrate(ctx, db, "taskqueue")         // once per deploy; idempotent
//	store, err := pgstore.New(db, pgstore.Options{})      // db: *sql.DB over pgx's stdlib driver
//	defer store.Close()                                   // after the Runner's Shutdown
//	r, err := taskqueue.New(taskqueue.Options{Store: store, PollInterval: 200 * time.Millisecond})
//
// # Schema
//
// [Migrate] creates the schema and brings its tables to [SchemaVersion]
// from migrations embedded in the package, one transaction each, under an
// advisory lock, so every instance may call it at start. One row per task
// holds its Info, payload (bytea, byte for byte), metadata (jsonb), lease
// and claim token.
// Times are written from Go's clock (time.Now), never from Postgres's
// now(), and kept to the microsecond, as Postgres keeps them.
//
// # Claiming
//
// A claim is one statement: SELECT … FOR UPDATE SKIP LOCKED over the
// pending tasks that are due, ordered by run_at and then by insertion, on a
// partial index that holds pending tasks only, feeding an UPDATE that marks
// them running, counts the attempt, takes the next claim token and sets the
// lease. Instances never wait for each other's locks. The statement is the
// claim_due function that Migrate installs, planned with bitmap scans and
// sorts turned off, so that it walks the index from the first due task and
// stops after the tasks it takes whatever the table's statistics say: left
// to itself, the planner reads and sorts every pending task whenever its
// statistics make pending tasks look rare (a new table, or a backlog that
// arrived after the last ANALYZE), and a claim then costs as much as the
// whole backlog.
//
// The Claims a Runner's workers make are coalesced: one of them claims for
// all that wait, up to 1000 tasks in one statement, and hands the tasks out
// first come, first served, so a busy queue costs a statement per batch
// rather than per task, and no task is claimed before a worker waits for
// it. A Claim whose ctx ends while the statement runs is passed over and
// returns ctx's error: its task goes to the next waiter, or back to pending
// with its attempt given back when none is left. Finish, Retry and Release
// are batched the same way, one statement for all the attempts that end
// while the previous statement runs.
//
// # Fencing, leases and rescue
//
// Every update of a running attempt names its claim token, and changes
// the row only while the task is running under that token: a worker
// presumed dead that wakes up gets [taskqueue.ErrLeaseLost] and its outcome
// is dropped, whatever the attempt that replaced it did. A claim holds a
// lease of Options.Lease (30s by default); the Runner renews it every third
// of that. Every instance runs [Store.Rescue] every Options.RescueInterval:
// one UPDATE over the running tasks whose lease lapsed, with SKIP LOCKED,
// returns them to pending with the attempt counted (or fails them when it
// was the last, or cancels them when a cancel was requested), so instances
// need no leader and never rescue a task twice. A crashed worker's task
// runs again within about Lease plus RescueInterval.
//
// # Wake-ups
//
// Inserts, retries, releases and rescues send a NOTIFY on a channel of the
// schema's own. Each store keeps one LISTEN connection, held from its pool
// or opened from Options.ListenConfig, and wakes its waiting Claims for the
// kinds it hears of; it reconnects with backoff when the connection drops,
// and looks for missed work when it is back. Claims also wake at once for
// what goes through their own store, when the earliest delayed task falls
// due, and every Options.PollInterval (1s by default) whatever happens, so
// work is found without a tight poll loop and without the listener.
//
// # Transactional enqueue
//
// Insert runs in the caller's transaction when its ctx carries one on the
// store's *sql.DB, as package txn puts it there. So Runner.Submit called
// inside txn.Do enqueues with the caller's own writes: the task exists only
// if the transaction commits, no worker can claim it before then (the row
// is invisible until the commit, and the NOTIFY is delivered at the
// commit), and the store wakes its own Claims after the commit:
//
//	err := txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
//		if _, err := tx.ExecContext(ctx, "INSERT INTO orders …"); err != nil {
//			return err
//		}
//		_, err := runner.Submit(ctx, "ship", order) // rolls back with the order
//		return err
//	})
//
// # Across instances
//
// Get, List, Cancel and Stats read and write the shared table, so any
// instance answers for any task. A Cancel of a task running on another
// instance reaches its handler at once: the store is a
// [taskqueue.CancelNotifier], and the request travels by NOTIFY (or, while
// the listener is down, at the next heartbeat). Wait and Subscribe see
// changes made by other instances when taskqueue.Options.PollInterval is
// set, which a Runner over a shared store should do.
//
// # Retention and limits
//
// The Runner's sweeper calls DeleteFinishedBefore, which deletes in batches
// of Options.DeleteBatch, each its own short statement. Payload and result
// sizes are bounded by the Runner (taskqueue.Options.MaxPayloadBytes), error
// texts and progress messages by taskqueue.MaxErrorMessage and
// MaxProgressMessage; text columns cannot hold NUL bytes or invalid UTF-8,
// which are stored as '?'. The store never reports taskqueue.ErrQueueFull:
// the database is the bound.
//
// # Background work
//
// New starts the listener and the rescuer, each one goroutine; [Store.Close]
// stops them. A test that runs the store inside a testing/synctest bubble
// sets Options.DisableListener, since a goroutine waiting on the network
// stops the bubble's clock (the database's round trips themselves take no
// time on it).
package pgstore
