-- metadata is the task's taskqueue.Metadata: a JSON object of strings,
-- handed to each attempt's handler with the payload. NULL when the task
-- was submitted without any. Rows that exist already have none.
ALTER TABLE tasks ADD COLUMN metadata jsonb;
