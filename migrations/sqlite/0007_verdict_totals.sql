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
