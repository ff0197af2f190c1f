-- Withdrawals to cold storage, one per (workflow, scheduled period). The row and its reserved
-- address are written before the provider is called, so an unknown outcome can be reconciled.
CREATE TABLE withdrawals (
    key           TEXT    PRIMARY KEY,
    workflow      TEXT    NOT NULL,
    provider      TEXT    NOT NULL,
    wallet        TEXT    NOT NULL,
    address       TEXT    NOT NULL,
    address_index INTEGER NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('planned', 'requesting', 'requested', 'sent', 'confirmed', 'skipped', 'failed')),
    -- The balance seen just before the provider was called, and what was sent.
    balance_sat   INTEGER,
    amount_sat    INTEGER,
    fee_sat       INTEGER,
    fee_rate      TEXT,
    provider_ref  TEXT,
    txid          TEXT,
    reason        TEXT,
    confirmations INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    next_check_at INTEGER
) WITHOUT ROWID;
CREATE INDEX withdrawals_to_follow ON withdrawals (next_check_at) WHERE next_check_at IS NOT NULL;
