-- Covering indexes: an agent's totals and task counts are read from the index alone, a
-- few pages, instead of one table page per verdict or task (the rows hold whole JSON
-- bodies, so an agent's rows are spread over as many pages as it has rows).
DROP INDEX verifications_agent_created_idx;
CREATE INDEX verifications_agent_totals_idx ON verifications (agent_id, created_us)
    INCLUDE (seq, outcome, quality, discrepancies, response_secs, substantive);
DROP INDEX tasks_agent_assigned_idx;
CREATE INDEX tasks_agent_assigned_idx ON tasks (agent_id, assigned_us) INCLUDE (status);
