-- Pocket's lifecycle can bring two different bodies for one (exchange, event): deliveries are
-- deduplicated on (exchange, event, hash of the body). (Twin of migrations/sqlite/0006, which
-- rebuilds exchange_events because SQLite cannot alter a key; PostgreSQL alters it in place.)

ALTER TABLE webhook_inbox ADD COLUMN body_hash TEXT;
DROP INDEX webhook_inbox_once;
CREATE UNIQUE INDEX webhook_inbox_once_per_body ON webhook_inbox (exchange_id, event, body_hash)
    WHERE exchange_id IS NOT NULL;
-- Unrecognized bodies are pruned by age and count, oldest first.
CREATE INDEX webhook_inbox_unrecognized ON webhook_inbox (status, received_at) WHERE status = 'unrecognized';

ALTER TABLE exchange_events ADD COLUMN body_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE exchange_events ALTER COLUMN body_hash DROP DEFAULT;
ALTER TABLE exchange_events DROP CONSTRAINT exchange_events_pkey;
ALTER TABLE exchange_events ADD PRIMARY KEY (exchange_id, event, body_hash);

-- Alert coalescing: at most one email per kind and window; what arrives inside an open window
-- is counted and reported in one summary when the window closes.
CREATE TABLE alert_windows (
    kind             TEXT   PRIMARY KEY,
    window_start     BIGINT NOT NULL,
    suppressed_count BIGINT NOT NULL DEFAULT 0 CHECK (suppressed_count >= 0),
    -- The first suppressed one and the last, for the summary.
    first_suppressed BIGINT,
    last_suppressed  BIGINT
);
