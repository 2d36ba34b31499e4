-- version counts the changes of a task's Info (taskqueue.Info.Version): 1
-- at insert, and one more with every statement that changes what Get
-- returns. Rows that exist already start from 1.
ALTER TABLE tasks ADD COLUMN version bigint NOT NULL DEFAULT 1;
