// Package taskqueue runs tasks in the background and tracks them: submit
// work, get an id back at once, and follow the task through pending,
// running and one of succeeded, failed or canceled, with its progress,
// result and error. It is Go's answer to a tasks table plus background
// workers, or to Celery's update_state and AsyncResult.
//
// # Running tasks
//
// A [Runner] is made by [New] from [Options], whose zero value is all
// defaults. Handlers are registered per kind with [Handle], typed by their
// payload and result, which travel as JSON so that a durable [Store] can
// hold them; then [Runner.Start] starts a fixed pool of workers:
//
//	r, err := taskqueue.New(taskqueue.Options{Workers: 8, Retention: time.Hour})
//	err = taskqueue.Handle(r, "resize", func(ctx context.Context, job *taskqueue.Job, p ResizeArgs) (ResizeResult, error) {
//		job.Progress(40, "decoded")
//		...
//	})
//	err = r.Start(ctx)
//	info, err := r.Submit(ctx, "resize", args, taskqueue.MaxAttempts(5), taskqueue.UniqueKey("img-42"))
//
// [Runner.Submit] validates before it accepts: an unknown kind is
// [ErrUnknownKind], a payload that does not encode is an error, and a full
// queue is [ErrQueueFull] — Submit never blocks for room and the queue is
// never unbounded. Per-task options are [MaxAttempts], [Timeout], [Delay],
// [RunAt], [UniqueKey] and [Metadata]. Metadata is a small, bounded map of
// strings stored with the task and handed to every attempt's handler by
// [Job.Metadata], wherever it runs: the carrier for a trace context or a
// correlation id. The package gives its keys no meaning, so it needs no
// tracing library of its own.
//
// # Following tasks
//
// [Runner.Get] returns a task's [Info]; an id that never existed or whose
// task has expired is [ErrNotFound], never a pending lookalike.
// [Runner.List] pages through tasks newest first, filtered by [Filter],
// with opaque keyset cursors (a position, not a secret; a cursor List did
// not make is [ErrInvalidCursor]). [Runner.Wait] blocks until a task
// finishes; [Runner.Subscribe] returns a channel of updates that never
// blocks the Runner: it holds one Info and always the latest, so a slow
// reader skips intermediate updates but never the terminal one. Options.OnFinish
// is called once per finished task, for notifications. Each Info carries a
// Version that the store counts up with every change of the task, so the
// processes sharing a store agree on which of two Infos is newer (an event
// stream can use it as its event id).
//
// Handlers report progress with [Job.Progress] (0 to 100 and a message).
// Writes are coalesced: the first goes to the store at once, later ones at
// most once per Options.ProgressInterval (default 100ms), so a handler may
// report per item.
//
// # Failures
//
// A handler error fails the attempt; the task is retried after
// Options.Backoff ([DefaultBackoff]: exponential from 1s to 10m with
// jitter) until MaxAttempts (default 3), then fails with the last error.
// [Permanent] errors skip the retries. A panic is a failed attempt whose
// Error holds the panic value and the stack. A timeout is a failed attempt
// with a message saying so. A payload that does not decode fails the task
// at once. Error texts, panic values and stacks are cut to
// [MaxErrorMessage] bytes, so a task that fails holds no more than that.
//
// # Cancellation and shutdown
//
// [Runner.Cancel] of a pending task means it never runs; of a running task
// it cancels the handler's ctx with cause [ErrCanceled], and the task ends
// canceled when the handler returns; of a finished task it changes nothing
// and returns [ErrFinished].
//
// [Runner.Shutdown] stops intake ([ErrClosed] from then on), lets running
// handlers finish until its ctx ends, then cancels them and returns their
// tasks to pending without counting the attempt. Tasks left pending are
// not dropped: Shutdown reports them in a [*ShutdownError].
//
// # Retention
//
// Finished tasks stay visible for Options.Retention (default 1h) — exactly:
// at Retention they are ErrNotFound and unlisted — and the Runner deletes
// them from the store in the background, so memory stays bounded under a
// constant stream of tasks. The [MemoryStore] also keeps at most
// MemoryOptions.MaxFinished finished tasks (default [DefaultMaxFinished]),
// dropping the oldest early past it, so a flood of quick tasks cannot hold
// rate × Retention of them.
//
// # Stores
//
// A [Store] holds the state; the Runner is the worker loop over it. The
// default is the in-process [MemoryStore], bounded by QueueSize. The
// interface is shaped for a durable store shared by several processes:
// [Store.Claim] blocks until work is due, every update names the attempt
// that holds the task (a stale one gets [ErrLeaseLost]), claims may carry a
// lease renewed by [Store.Heartbeat], and cancel requests are recorded by
// the store so the process running the task learns of them. A store that
// also implements [CancelNotifier] reports cancel requests as they are
// made, and the Runner then interrupts the handler at once instead of at
// its next heartbeat. A store that implements [KindCounter] counts its
// tasks by kind as well ([Runner.StatsByKind]), for a queue's depth per
// kind of work. The package taskqueue/taskqueuetest holds the
// conformance suite every store passes; taskqueue/pgstore is the durable
// store in Postgres.
//
// # Costs
//
// Workers are long-lived goroutines: over the MemoryStore no goroutine is
// started per task, and timers are armed only for tasks with a Timeout or
// a Delay, while progress is being coalesced, or while a leased claim is
// renewed. A no-op task costs about ten small allocations end to end (see
// BenchmarkSubmitAndRun). Over any other store, whose calls are taken to
// be round trips, a worker records each attempt's outcome on a short-lived
// goroutine while it claims its next task, so that the two round trips
// overlap; it has at most one such recording outstanding, Shutdown waits
// for them, and subscribers and OnFinish hear of the outcome once it is
// recorded.
package taskqueue
