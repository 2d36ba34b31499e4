package pgstore

import (
	"fmt"
	"strings"
)

// statements holds the store's SQL, with its schema's tables named in full.
// Every time a statement compares or writes is a parameter from Go's clock.
// A statement that notifies calls pg_notify in its select list, where it
// runs once per row returned (a WHERE clause could be folded away), and
// the caller scans and drops the column; Postgres delivers the
// notifications when the transaction commits, and only once per distinct
// payload in a transaction.
type statements struct {
	insert, live, get, list, cancel, heartbeat, progress string
	deleteFinished, stats, statsByKind                   string
	claim                                                string
	end, exists, rescue                                  string
}

// claimColumns are taskColumns as the claim statement returns them: from
// claim_due's task column, which is NULL when nothing was claimed, so the
// columns that are never NULL in the table get a placeholder.
var claimColumns = func() string {
	placeholder := map[string]string{
		"id": "''", "kind": "''", "status": "'running'", "attempt": "0", "max_attempts": "0",
		"error": "''", "progress_percent": "0", "progress_message": "''",
		"created_at": "'epoch'", "run_at": "'epoch'", "timeout_ns": "0", "claim_token": "0", "version": "0",
	}
	var b strings.Builder
	for i, c := range taskColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		if p, ok := placeholder[c]; ok {
			fmt.Fprintf(&b, "coalesce((c.task).%s, %s)", c, p)
		} else {
			b.WriteString("(c.task)." + c)
		}
	}
	return b.String()
}()

func buildStatements(schema string) statements {
	t := schema + ".tasks"
	info := columns("", infoColumns)
	infoT := columns("t.", infoColumns)
	r := strings.NewReplacer("{T}", t, "{SCHEMA}", schema, "{INFO}", info, "{INFO_T}", infoT,
		"{TASK_T}", columns("t.", taskColumns), "{CLAIMED}", claimColumns)
	return statements{
		insert: r.Replace(`
WITH ins AS (
	INSERT INTO {T} (id, kind, max_attempts, unique_key, payload, timeout_ns, created_at, run_at, metadata)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $11::jsonb)
	ON CONFLICT (kind, unique_key) WHERE unique_key IS NOT NULL AND status IN ('pending', 'running') DO NOTHING
	RETURNING {INFO}
)
SELECT {INFO}, pg_notify($9, $10 || kind) IS NULL FROM ins`),
		live: r.Replace(`SELECT {INFO} FROM {T} WHERE kind = $1 AND unique_key = $2 AND status IN ('pending', 'running')`),
		get:  r.Replace(`SELECT {INFO} FROM {T} WHERE id = $1`),
		list: r.Replace(`SELECT {INFO} FROM {T}`),
		cancel: r.Replace(`
WITH upd AS (
	UPDATE {T} SET
		status = CASE WHEN status = 'pending' THEN 'canceled' ELSE status END,
		cancel_requested = true,
		finished_at = CASE WHEN status = 'pending' THEN $2::timestamptz ELSE finished_at END,
		error = CASE WHEN status = 'pending' THEN $3 ELSE error END,
		result = CASE WHEN status = 'pending' THEN NULL ELSE result END,
		payload = CASE WHEN status = 'pending' THEN NULL ELSE payload END,
		version = CASE WHEN status = 'pending' THEN version + 1 ELSE version END
	WHERE id = $1 AND status IN ('pending', 'running')
	RETURNING {INFO}
)
SELECT {INFO}, CASE WHEN status = 'running' THEN pg_notify($4, $5 || id) IS NULL ELSE false END FROM upd`),
		heartbeat: r.Replace(`
WITH upd AS (
	UPDATE {T} SET lease_until = $3 WHERE id = $1 AND claim_token = $2 AND status = 'running'
	RETURNING cancel_requested
)
SELECT coalesce((SELECT cancel_requested FROM upd), false), EXISTS (SELECT 1 FROM upd), EXISTS (SELECT 1 FROM {T} WHERE id = $1)`),
		progress: r.Replace(`
WITH upd AS (
	UPDATE {T} SET progress_percent = $3, progress_message = $4, version = version + 1
	WHERE id = $1 AND claim_token = $2 AND status = 'running'
	RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM upd), EXISTS (SELECT 1 FROM {T} WHERE id = $1)`),
		deleteFinished: r.Replace(`
WITH doomed AS (
	SELECT id FROM {T} WHERE finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED
)
DELETE FROM {T} t USING doomed WHERE t.id = doomed.id`),
		stats: r.Replace(`
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'running'),
	count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'),
	count(*) FILTER (WHERE status = 'canceled')
FROM {T}`),
		statsByKind: r.Replace(`SELECT kind, status, count(*) FROM {T} GROUP BY kind, status`),
		// claim runs the claim_due function (see its migration), which
		// claims and reports the next due time in one round trip.
		claim: r.Replace(`SELECT {CLAIMED}, coalesce((c.task).seq, 0), c.next_at FROM {SCHEMA}.claim_due($1, $2, $3, $4) c`),
		// end ends a batch of attempts, each fenced by its claim token. A
		// recorded cancel request wins over what the attempt reported.
		end: r.Replace(`
WITH r AS (
	SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::text[], $6::timestamptz[], $7::boolean[])
		AS r(id, claim, status, result, error, run_at, release)
), upd AS (
	UPDATE {T} t SET
		status = CASE WHEN t.cancel_requested THEN 'canceled' ELSE r.status END,
		attempt = CASE WHEN r.release AND NOT t.cancel_requested THEN t.attempt - 1 ELSE t.attempt END,
		result = CASE WHEN t.cancel_requested THEN NULL ELSE r.result END,
		error = CASE WHEN t.cancel_requested THEN $9 WHEN r.release THEN t.error ELSE r.error END,
		run_at = CASE WHEN t.cancel_requested OR r.status <> 'pending' THEN t.run_at ELSE r.run_at END,
		finished_at = CASE WHEN t.cancel_requested OR r.status <> 'pending' THEN $8::timestamptz END,
		payload = CASE WHEN t.cancel_requested OR r.status <> 'pending' THEN NULL ELSE t.payload END,
		lease_until = NULL,
		version = t.version + 1
	FROM r
	WHERE t.id = r.id AND t.claim_token = r.claim AND t.status = 'running'
	RETURNING {INFO_T}, t.claim_token
)
SELECT {INFO}, claim_token, CASE WHEN status = 'pending' THEN pg_notify($10, $11 || kind) IS NULL ELSE false END FROM upd`),
		exists: r.Replace(`SELECT id FROM {T} WHERE id = ANY($1)`),
		// rescue returns running tasks whose lease lapsed to pending (the
		// attempt counted), or fails them when attempts are used up, or
		// cancels them when a cancel was requested.
		rescue: r.Replace(`
WITH lapsed AS (
	SELECT id, CASE
			WHEN cancel_requested THEN 'canceled'
			WHEN attempt >= max_attempts THEN 'failed'
			ELSE 'pending' END AS next
	FROM {T} WHERE status = 'running' AND lease_until <= $1
	ORDER BY lease_until LIMIT $2
	FOR UPDATE SKIP LOCKED
), upd AS (
	UPDATE {T} t SET
		status = l.next,
		error = CASE WHEN l.next = 'canceled' THEN $3
			ELSE 'pgstore: attempt ' || t.attempt || ' lost its lease: its worker stopped renewing it' END,
		result = NULL,
		run_at = CASE WHEN l.next = 'pending' THEN $1 ELSE t.run_at END,
		finished_at = CASE WHEN l.next = 'pending' THEN NULL ELSE $1 END,
		payload = CASE WHEN l.next = 'pending' THEN t.payload END,
		lease_until = NULL,
		version = t.version + 1
	FROM lapsed l WHERE t.id = l.id
	RETURNING t.kind, t.status
)
SELECT kind, status, CASE WHEN status = 'pending' THEN pg_notify($4, $5 || kind) IS NULL ELSE false END FROM upd`),
	}
}
