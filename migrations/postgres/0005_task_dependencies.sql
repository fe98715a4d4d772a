-- Which task waits for which, indexed by the dependency: finding a task's dependents (on
-- every verdict and rollback) no longer scans every task's `depends_on`.
CREATE TABLE task_dependencies (
    task_id    TEXT NOT NULL REFERENCES tasks (id),
    depends_on TEXT NOT NULL,
    PRIMARY KEY (depends_on, task_id)
);

INSERT INTO task_dependencies (task_id, depends_on)
SELECT id, dep
FROM tasks, unnest(string_to_array(trim(both '|' from depends_on), '|')) AS dep
WHERE depends_on <> '|';
