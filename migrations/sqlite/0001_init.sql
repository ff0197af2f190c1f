-- satflow's first schema. A migration that has landed is never edited: later changes are new files.
-- Times are INTEGER milliseconds since the Unix epoch (UTC); money is TEXT holding an exact decimal.

-- A schedule firing, recorded once per (workflow, scheduled_for) however many daemons see it.
CREATE TABLE fires (
    workflow      TEXT    NOT NULL,
    scheduled_for INTEGER NOT NULL,
    recorded_at   INTEGER NOT NULL,
    run_id        INTEGER REFERENCES runs (id),
    PRIMARY KEY (workflow, scheduled_for)
) WITHOUT ROWID;

-- A workflow run. trigger_key makes a run unique per what started it: the fire time, the
-- exchange event, or a manual request id.
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    workflow     TEXT    NOT NULL,
    trigger      TEXT    NOT NULL CHECK (trigger IN ('schedule', 'event', 'manual')),
    trigger_key  TEXT    NOT NULL,
    event_json   TEXT,
    status       TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'succeeded', 'failed')),
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    lease_owner  TEXT,
    lease_until  INTEGER,
    error        TEXT,
    UNIQUE (workflow, trigger, trigger_key)
);
CREATE INDEX runs_by_status ON runs (status, created_at);

-- Each step's outcome, written before the next step starts: a resumed run skips these.
CREATE TABLE step_results (
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    step_id     TEXT    NOT NULL,
    position    INTEGER NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped', 'waiting')),
    output_json TEXT,
    error       TEXT,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (run_id, step_id)
) WITHOUT ROWID;

-- Every effect on the outside world, written in the transaction of the change that causes it.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    payload_json    TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- `outbox retry` gives a dead item a fresh budget: attempts are counted from here.
    budget_from     INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    result_json     TEXT,
    run_id          INTEGER REFERENCES runs (id),
    step_id         TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);

-- The history of each outbox item's attempts, for `satflow outbox`.
CREATE TABLE outbox_attempts (
    outbox_id   INTEGER NOT NULL REFERENCES outbox (id),
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    outcome     TEXT    CHECK (outcome IN ('done', 'retry', 'dead', 'unknown')),
    http_status INTEGER,
    error       TEXT,
    PRIMARY KEY (outbox_id, attempt)
) WITHOUT ROWID;

-- Webhooks exactly as received (raw body), stored before the 200 is sent.
CREATE TABLE webhook_inbox (
    id             INTEGER PRIMARY KEY,
    received_at    INTEGER NOT NULL,
    correlation_id TEXT,
    retry_count    INTEGER,
    event          TEXT,
    exchange_id    TEXT,
    body           BLOB    NOT NULL,
    status         TEXT    NOT NULL CHECK (status IN ('pending', 'processed', 'unrecognized', 'failed')),
    processed_at   INTEGER,
    error          TEXT
);
-- One row per (exchange, event): a redelivery is a no-op. Unrecognised payloads have no
-- exchange id and are all kept.
CREATE UNIQUE INDEX webhook_inbox_once ON webhook_inbox (exchange_id, event) WHERE exchange_id IS NOT NULL;
CREATE INDEX webhook_inbox_pending ON webhook_inbox (status, id);

-- Pocket orders, one per declaring workflow.
CREATE TABLE orders (
    id           TEXT    PRIMARY KEY,
    workflow     TEXT    NOT NULL,
    side         TEXT    NOT NULL DEFAULT 'buy' CHECK (side IN ('buy', 'sell')),
    currency     TEXT    NOT NULL CHECK (currency IN ('eur', 'chf', 'gbp')),
    fee_rate     TEXT,
    active       INTEGER NOT NULL,
    payout_kind  TEXT    NOT NULL CHECK (payout_kind IN ('address', 'xpub', 'lightning', 'iban')),
    payout_json  TEXT    NOT NULL,
    payment_json TEXT    NOT NULL,
    raw_json     TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    -- When a `pocket.order` step last read it back; NULL until the first time.
    checked_at   INTEGER
);
CREATE INDEX orders_by_workflow ON orders (workflow, created_at);

-- Exchanges seen through webhooks or read back from Pocket. next_check_at drives reconciliation.
CREATE TABLE exchanges (
    id            TEXT    PRIMARY KEY,
    order_id      TEXT,
    state         TEXT    NOT NULL CHECK (state IN ('executed', 'settled', 'interrupted', 'refunded')),
    pair          TEXT,
    cost          TEXT,
    amount        TEXT,
    rate          TEXT,
    fee           TEXT,
    payout_json   TEXT,
    reason_json   TEXT,
    action_json   TEXT,
    raw_json      TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- Reconciliation: when to read it back from Pocket next, and how often it has been.
    next_check_at INTEGER,
    check_count   INTEGER NOT NULL DEFAULT 0,
    -- On-chain payouts followed through an explorer: depth, and when to look again.
    confirmations   INTEGER,
    confirm_next_at INTEGER
);
CREATE INDEX exchanges_to_check ON exchanges (next_check_at) WHERE next_check_at IS NOT NULL;

-- Each transition of an exchange, once, whichever way it was learned.
CREATE TABLE exchange_events (
    exchange_id TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    source      TEXT    NOT NULL CHECK (source IN ('webhook', 'reconcile')),
    recorded_at INTEGER NOT NULL,
    payload     TEXT    NOT NULL,
    PRIMARY KEY (exchange_id, event)
) WITHOUT ROWID;

-- Address rotation: the next index only moves forward; key_id notices a changed xpub.
CREATE TABLE wallet_cursors (
    wallet     TEXT    PRIMARY KEY,
    key_id     TEXT    NOT NULL,
    next_index INTEGER NOT NULL CHECK (next_index >= 0)
) WITHOUT ROWID;

CREATE TABLE wallet_addresses (
    wallet      TEXT    NOT NULL,
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    address     TEXT    NOT NULL UNIQUE,
    state       TEXT    NOT NULL CHECK (state IN ('reserved', 'used')),
    used_by     TEXT,
    reserved_at INTEGER NOT NULL,
    used_at     INTEGER,
    PRIMARY KEY (wallet, idx)
);
