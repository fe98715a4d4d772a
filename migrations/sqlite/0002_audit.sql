-- The tamper-evident audit log (SQLite). One row per change ARES committed, written in the
-- change's own transaction; `hash` chains each row to the one before (see src/audit).
-- Append-only: the triggers below refuse UPDATE and DELETE.

CREATE TABLE audit_log (
    -- Position in the chain, from 1, given by ARES inside the commit.
    seq       BIGINT NOT NULL,
    id        TEXT   NOT NULL,
    at_us     BIGINT NOT NULL,
    -- Who, which tool, the arguments' digest, outcome, subjects (JSON).
    body      TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL,
    CONSTRAINT audit_log_seq_key UNIQUE (seq),
    CONSTRAINT audit_log_id_key UNIQUE (id)
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;

-- Checkpoints ARES signed of the log's length and head hash; append-only as well.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    length    BIGINT NOT NULL,
    head_hash TEXT   NOT NULL,
    at_us     BIGINT NOT NULL,
    body      TEXT   NOT NULL
);

CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'audit_checkpoints is append-only');
END;
