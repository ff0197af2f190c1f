-- Pocket's lifecycle (interrupted -> executed -> settled, interrupted -> refunded) can bring two
-- different bodies for one (exchange, event): a second `interrupted` with a new action. Deliveries
-- are now deduplicated on (exchange, event, hash of the body): an exact retry is absorbed, a
-- different body is recorded. Rows from before this migration have no hash ('' in the events).

-- The inbox: a new column and a new unique index in place of the one on (exchange_id, event).
ALTER TABLE webhook_inbox ADD COLUMN body_hash TEXT;
DROP INDEX webhook_inbox_once;
CREATE UNIQUE INDEX webhook_inbox_once_per_body ON webhook_inbox (exchange_id, event, body_hash)
    WHERE exchange_id IS NOT NULL;
-- Unrecognized bodies are pruned by age and count, oldest first.
CREATE INDEX webhook_inbox_unrecognized ON webhook_inbox (status, received_at) WHERE status = 'unrecognized';

-- The events: the primary key changes, so the table is rebuilt (SQLite cannot alter a key).
CREATE TABLE exchange_events_by_body (
    exchange_id TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    body_hash   TEXT    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('webhook', 'reconcile')),
    recorded_at INTEGER NOT NULL,
    payload     TEXT    NOT NULL,
    PRIMARY KEY (exchange_id, event, body_hash)
) WITHOUT ROWID;
INSERT INTO exchange_events_by_body (exchange_id, event, body_hash, source, recorded_at, payload)
    SELECT exchange_id, event, '', source, recorded_at, payload FROM exchange_events;
DROP TABLE exchange_events;
ALTER TABLE exchange_events_by_body RENAME TO exchange_events;

-- Alert coalescing: at most one email per kind and window; what arrives inside an open window
-- is counted and reported in one summary when the window closes.
CREATE TABLE alert_windows (
    kind             TEXT    PRIMARY KEY,
    window_start     INTEGER NOT NULL,
    suppressed_count INTEGER NOT NULL DEFAULT 0 CHECK (suppressed_count >= 0),
    -- The first suppressed one and the last, for the summary.
    first_suppressed INTEGER,
    last_suppressed  INTEGER
) WITHOUT ROWID;
