-- The tasks table: one row per task, from Insert until retention deletes it.
-- Every time is written by the store from Go's clock (time.Now), never by
-- now(), so that leases and due times follow the clock of the processes
-- that share the queue.
CREATE TABLE tasks (
	id               text        PRIMARY KEY,
	-- seq is the order of insertion: due tasks are claimed by run_at, then seq.
	seq              bigint      GENERATED ALWAYS AS IDENTITY,
	kind             text        NOT NULL,
	status           text        NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
	attempt          integer     NOT NULL DEFAULT 0,
	max_attempts     integer     NOT NULL,
	unique_key       text,
	-- payload is the handler's JSON input, byte for byte; NULL once finished.
	payload          bytea,
	result           bytea,
	error            text        NOT NULL DEFAULT '',
	progress_percent smallint    NOT NULL DEFAULT 0,
	progress_message text        NOT NULL DEFAULT '',
	timeout_ns       bigint      NOT NULL DEFAULT 0,
	-- claim_token fences every update of a running attempt: each claim
	-- takes the next one, and an update naming an older one changes nothing.
	claim_token      bigint      NOT NULL DEFAULT 0,
	cancel_requested boolean     NOT NULL DEFAULT false,
	created_at       timestamptz NOT NULL,
	run_at           timestamptz NOT NULL,
	started_at       timestamptz,
	finished_at      timestamptz,
	lease_until      timestamptz
) WITH (fillfactor = 80);

-- Claiming walks this index in order and stops at the first due task it
-- can lock: it holds only pending tasks, so it stays small however many
-- finished tasks the table keeps.
CREATE INDEX tasks_claim ON tasks (run_at, seq) WHERE status = 'pending';

-- The rescuer finds running tasks whose lease has lapsed.
CREATE INDEX tasks_lease ON tasks (lease_until) WHERE status = 'running';

-- Retention deletes finished tasks oldest first.
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

-- List pages newest first by (created_at, id).
CREATE INDEX tasks_created ON tasks (created_at, id);

-- A unique key is held by one live task of its kind at a time.
CREATE UNIQUE INDEX tasks_unique ON tasks (kind, unique_key)
	WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
