-- Reliability adds up these numbers of an agent's verdicts in the database (with SQL
-- aggregates), instead of reading every verdict's body on each call, whose cost grew with
-- the agent's history. The body stays the record; these columns copy what is totalled.
ALTER TABLE verifications
    ADD COLUMN outcome TEXT,
    ADD COLUMN quality DOUBLE PRECISION,
    ADD COLUMN discrepancies BIGINT,
    ADD COLUMN response_secs DOUBLE PRECISION,
    ADD COLUMN substantive BIGINT;
UPDATE verifications SET
    outcome = body::jsonb ->> 'outcome',
    quality = (body::jsonb ->> 'quality_score')::double precision,
    discrepancies = (body::jsonb ->> 'discrepancies')::bigint,
    response_secs = (body::jsonb ->> 'response_time_secs')::double precision,
    substantive = (body::jsonb -> 'evidence_analysis' ->> 'substantive_items')::bigint;

-- Covering indexes: an agent's totals and task counts are read from the index alone, a
-- few pages, instead of one table page per verdict or task (the rows hold whole JSON
-- bodies, so an agent's rows are spread over as many pages as it has rows).
DROP INDEX verifications_agent_created_idx;
CREATE INDEX verifications_agent_totals_idx ON verifications (agent_id, created_us)
    INCLUDE (seq, outcome, quality, discrepancies, response_secs, substantive);
DROP INDEX tasks_agent_assigned_idx;
CREATE INDEX tasks_agent_assigned_idx ON tasks (agent_id, assigned_us) INCLUDE (status);
