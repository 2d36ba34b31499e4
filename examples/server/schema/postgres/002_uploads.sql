-- Uploaded files waiting for their tasks, in the database, so that
-- whichever instance claims a file task reads the file, and any instance
-- can remove it when the task ends.

-- One row per upload. task_id is set, and expires_at cleared, in the
-- transaction that submits the upload's file task; until then the upload
-- is being received, by an instance that must finish by expires_at.
CREATE TABLE IF NOT EXISTS uploads (
	id           TEXT PRIMARY KEY,
	task_id      TEXT,
	callback_url TEXT NOT NULL DEFAULT '',
	size         BIGINT NOT NULL DEFAULT 0, -- bytes stored, all counted in upload_space
	created_at   TIMESTAMPTZ NOT NULL,
	expires_at   TIMESTAMPTZ,
	checked_at   TIMESTAMPTZ NOT NULL       -- when a sweep last looked at its task
);
CREATE INDEX IF NOT EXISTS uploads_checked ON uploads (checked_at) WHERE task_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS uploads_expires ON uploads (expires_at) WHERE expires_at IS NOT NULL;

-- The bytes of each upload, in chunks numbered from 0.
CREATE TABLE IF NOT EXISTS upload_chunks (
	upload_id TEXT NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
	seq       INTEGER NOT NULL,
	data      BYTEA NOT NULL,
	PRIMARY KEY (upload_id, seq)
);
-- Stored out of line without compression: uploads are often compressed
-- already, and the file task reads every byte anyway.
ALTER TABLE upload_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- The bytes all uploads hold, shared by every instance, so that
-- UPLOAD_SPACE bounds them all together.
CREATE TABLE IF NOT EXISTS upload_space (
	one  BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
	used BIGINT NOT NULL CHECK (used >= 0)
);
INSERT INTO upload_space (one, used) VALUES (true, 0) ON CONFLICT DO NOTHING;
