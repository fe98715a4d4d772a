-- The sweeper looks for tasks whose deadline has passed. The deadline was only in the body,
-- so every sweep read and decoded every open task; a column with an index makes it a range
-- lookup over the overdue ones.
ALTER TABLE tasks ADD COLUMN deadline_us BIGINT;
UPDATE tasks SET deadline_us =
    (extract(epoch FROM (body::jsonb ->> 'deadline')::timestamptz) * 1000000)::bigint
WHERE body::jsonb ->> 'deadline' IS NOT NULL;
CREATE INDEX tasks_status_deadline_idx ON tasks (status, deadline_us);
