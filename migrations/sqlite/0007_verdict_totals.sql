-- Reliability adds up these numbers of an agent's verdicts in the database (with SQL
-- aggregates), instead of reading every verdict's body on each call, whose cost grew with
-- the agent's history. The body stays the record; these columns copy what is totalled.
ALTER TABLE verifications ADD COLUMN outcome TEXT;
ALTER TABLE verifications ADD COLUMN quality DOUBLE PRECISION;
ALTER TABLE verifications ADD COLUMN discrepancies BIGINT;
ALTER TABLE verifications ADD COLUMN response_secs DOUBLE PRECISION;
ALTER TABLE verifications ADD COLUMN substantive BIGINT;
UPDATE verifications SET
    outcome = json_extract(body, '$.outcome'),
    quality = json_extract(body, '$.quality_score'),
    discrepancies = json_extract(body, '$.discrepancies'),
    response_secs = json_extract(body, '$.response_time_secs'),
    substantive = json_extract(body, '$.evidence_analysis.substantive_items');

-- Covering indexes: an agent's totals and task counts are read from the index alone, a
-- few pages, instead of one table page per verdict or task (the rows hold whole JSON
-- bodies, so an agent's rows are spread over as many pages as it has rows).
DROP INDEX verifications_agent_created_idx;
CREATE INDEX verifications_agent_totals_idx
    ON verifications (agent_id, created_us, outcome, quality, discrepancies, response_secs, substantive);
DROP INDEX tasks_agent_assigned_idx;
CREATE INDEX tasks_agent_assigned_idx ON tasks (agent_id, assigned_us, status);
