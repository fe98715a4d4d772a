-- ARES schema (PostgreSQL). A document store: each row keeps the full record as JSON in
-- `body`, plus the columns queries filter and sort on. Times are microseconds since the
-- Unix epoch (`*_us`). `seq` orders rows by insertion and is the pagination cursor.

CREATE TABLE agents (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    -- `|cap1|cap2|`, matched with LIKE '%|cap|%'.
    capabilities TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    created_us   BIGINT  NOT NULL,
    body         TEXT    NOT NULL,
    CONSTRAINT agents_id_key UNIQUE (id),
    CONSTRAINT agents_name_key UNIQUE (name)
);
CREATE INDEX agents_status_idx ON agents (status);

CREATE TABLE tasks (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    agent_id    TEXT    REFERENCES agents (id),
    -- `|uuid|uuid|`, matched with LIKE '%|uuid|%'.
    depends_on  TEXT    NOT NULL,
    assigned_us BIGINT,
    version     BIGINT  NOT NULL,
    created_us  BIGINT  NOT NULL,
    body        TEXT    NOT NULL,
    CONSTRAINT tasks_id_key UNIQUE (id)
);
CREATE INDEX tasks_status_idx ON tasks (status);
CREATE INDEX tasks_agent_status_idx ON tasks (agent_id, status);
CREATE INDEX tasks_agent_assigned_idx ON tasks (agent_id, assigned_us);

CREATE TABLE evidence (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT    NOT NULL,
    task_id     TEXT    NOT NULL REFERENCES tasks (id),
    agent_id    TEXT    NOT NULL REFERENCES agents (id),
    chain_index BIGINT  NOT NULL,
    created_us  BIGINT  NOT NULL,
    body        TEXT    NOT NULL,
    CONSTRAINT evidence_id_key UNIQUE (id),
    -- Also the index evidence_for_task reads the chain through.
    CONSTRAINT evidence_chain_key UNIQUE (task_id, chain_index)
);

CREATE TABLE verifications (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT    NOT NULL,
    task_id    TEXT    NOT NULL REFERENCES tasks (id),
    agent_id   TEXT    NOT NULL REFERENCES agents (id),
    created_us BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    CONSTRAINT verifications_id_key UNIQUE (id)
);
CREATE INDEX verifications_agent_created_idx ON verifications (agent_id, created_us);
CREATE INDEX verifications_task_idx ON verifications (task_id);

CREATE TABLE enforcement_actions (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id         TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL REFERENCES agents (id),
    action     TEXT    NOT NULL,
    created_us BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    CONSTRAINT enforcement_actions_id_key UNIQUE (id)
);
CREATE INDEX enforcement_actions_agent_created_idx ON enforcement_actions (agent_id, created_us);
CREATE INDEX enforcement_actions_created_idx ON enforcement_actions (created_us);

CREATE TABLE task_snapshots (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id    TEXT    NOT NULL REFERENCES tasks (id),
    status     TEXT    NOT NULL,
    created_us BIGINT  NOT NULL,
    body       TEXT    NOT NULL
);
CREATE INDEX task_snapshots_task_idx ON task_snapshots (task_id);

CREATE TABLE reliability_snapshots (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id    TEXT    NOT NULL REFERENCES agents (id),
    time_window TEXT    NOT NULL,
    created_us  BIGINT  NOT NULL,
    body        TEXT    NOT NULL
);
CREATE INDEX reliability_snapshots_agent_created_idx ON reliability_snapshots (agent_id, created_us);

CREATE TABLE idempotency (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope       TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    -- sha256 of the request.
    fingerprint TEXT    NOT NULL,
    created_us  BIGINT  NOT NULL,
    -- The JSON the first call answered.
    body        TEXT    NOT NULL,
    CONSTRAINT idempotency_scope_key_key UNIQUE (scope, key)
);

CREATE TABLE downstream_connections (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT    NOT NULL,
    updated_us BIGINT  NOT NULL,
    body       TEXT    NOT NULL,
    CONSTRAINT downstream_connections_name_key UNIQUE (name)
);
