-- claim_due claims up to p_limit pending tasks that are due at p_now, of
-- one of p_kinds (NULL: any kind), in due order (run_at, then seq): each
-- becomes running under the next claim token, with its lease until
-- p_lease_until. It returns one row per task claimed, or one row with a
-- NULL task when none was, and in every row next_at, the earliest run_at
-- of a pending task of those kinds that is not yet due (NULL if none).
--
-- It is a function so that its statements are planned with the settings
-- below. Every statement here walks an index in order and stops early:
-- the claim index from its first due task, the primary key for the
-- claimed ids. Left to itself, the planner reads the claim index through
-- a bitmap and sorts what it found whenever its statistics put only a few
-- pending tasks in the table (a new table, or a queue that was idle when
-- it was last analyzed and then filled up), and a claim then costs a read
-- and a sort of every pending task rather than of the tasks it takes.
-- search_path is the schema the function was created in, so it finds its
-- own table whatever the caller's search_path holds.
CREATE FUNCTION claim_due(p_now timestamptz, p_limit integer, p_lease_until timestamptz, p_kinds text[])
RETURNS TABLE (task tasks, next_at timestamptz)
LANGUAGE plpgsql
SET search_path FROM CURRENT
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
DECLARE
	next_due timestamptz;
BEGIN
	SELECT p.run_at INTO next_due FROM tasks p
	WHERE p.status = 'pending' AND p.run_at > p_now AND (p_kinds IS NULL OR p.kind = ANY (p_kinds))
	ORDER BY p.run_at
	LIMIT 1;
	RETURN QUERY
	UPDATE tasks t
	SET status = 'running', attempt = t.attempt + 1, claim_token = t.claim_token + 1,
		started_at = p_now, lease_until = p_lease_until, version = t.version + 1
	WHERE t.id = ANY (ARRAY(
		SELECT d.id FROM tasks d
		WHERE d.status = 'pending' AND d.run_at <= p_now AND (p_kinds IS NULL OR d.kind = ANY (p_kinds))
		ORDER BY d.run_at, d.seq
		LIMIT p_limit
		FOR UPDATE SKIP LOCKED))
	RETURNING t, next_due;
	IF NOT FOUND THEN
		RETURN QUERY SELECT NULL::tasks, next_due;
	END IF;
END
$$;
