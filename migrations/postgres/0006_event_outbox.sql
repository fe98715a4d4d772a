-- The events table doubles as an outbox. An instance that crashes between committing a
-- change and publishing its events leaves them unpublished; any instance's relay publishes
-- them later (at least once; listeners deduplicate by event id). Rows from before this
-- migration count as published.
ALTER TABLE events ADD COLUMN published SMALLINT NOT NULL DEFAULT 1;
CREATE INDEX events_unpublished_idx ON events (seq) WHERE published = 0;
