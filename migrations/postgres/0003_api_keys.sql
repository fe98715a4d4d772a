-- API keys for HTTP callers. Only a sha256 of each key's secret is kept (inside body).
CREATE TABLE api_keys (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    agent_id TEXT,
    revoked_us BIGINT,
    created_us BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX api_keys_agent ON api_keys (agent_id);
