-- The sweeper looks for tasks whose deadline has passed. The deadline was only in the body,
-- so every sweep read and decoded every open task; a column with an index makes it a range
-- lookup over the overdue ones.
ALTER TABLE tasks ADD COLUMN deadline_us INTEGER;
UPDATE tasks SET deadline_us =
    CAST(round((julianday(json_extract(body, '$.deadline')) - 2440587.5) * 86400000000) AS INTEGER)
WHERE json_extract(body, '$.deadline') IS NOT NULL;
CREATE INDEX tasks_status_deadline_idx ON tasks (status, deadline_us);
