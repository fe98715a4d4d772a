-- The event stream: every change's events, stored in the change's own transaction so an
-- acknowledged change always has them. Pruned by the retention sweeper.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    agent_id   TEXT,
    task_id    TEXT,
    created_us BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    CONSTRAINT events_id_key UNIQUE (id)
);
CREATE INDEX events_created_idx ON events (created_us);
CREATE INDEX reliability_snapshots_created_idx ON reliability_snapshots (created_us);
