-- Which task waits for which, indexed by the dependency: finding a task's dependents (on
-- every verdict and rollback) no longer scans every task's `depends_on`.
CREATE TABLE task_dependencies (
    task_id    TEXT NOT NULL REFERENCES tasks (id),
    depends_on TEXT NOT NULL,
    PRIMARY KEY (depends_on, task_id)
);

INSERT INTO task_dependencies (task_id, depends_on)
WITH RECURSIVE split(task_id, rest, dep) AS (
    SELECT id, substr(depends_on, 2), NULL FROM tasks WHERE depends_on <> '|'
    UNION ALL
    SELECT task_id, substr(rest, instr(rest, '|') + 1), substr(rest, 1, instr(rest, '|') - 1)
    FROM split WHERE rest <> ''
)
SELECT task_id, dep FROM split WHERE dep IS NOT NULL AND dep <> '';
