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
