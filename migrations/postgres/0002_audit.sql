-- The tamper-evident audit log (PostgreSQL). One row per change ARES committed, written in
-- the change's own transaction; `hash` chains each row to the one before (see src/audit).
-- Append-only: the triggers below refuse UPDATE, DELETE and TRUNCATE.

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

CREATE FUNCTION ares_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ares_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ares_refuse_change();

-- Checkpoints ARES signed of the log's length and head hash; append-only as well.
CREATE TABLE audit_checkpoints (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    length    BIGINT NOT NULL,
    head_hash TEXT   NOT NULL,
    at_us     BIGINT NOT NULL,
    body      TEXT   NOT NULL
);

CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION ares_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION ares_refuse_change();
