-- Treasury controls: the audit log (append-only, hash-chained), approvals on steps and who
-- proposed a manual run. satflow never updates or deletes an audit_log row.

-- Each row carries the hash of the row before it (prev_hash; 64 zeros for the first) and its
-- own hash over its canonical content. UNIQUE (prev_hash) keeps the chain a line: two writers
-- that read the same last row cannot both append after it.
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        BIGINT  NOT NULL,
    actor     TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    detail    TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL UNIQUE,
    hash      TEXT    NOT NULL UNIQUE
);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- A step that needs approvals before it runs. One per (run, step).
CREATE TABLE approvals (
    id          INTEGER PRIMARY KEY,
    run_id      BIGINT  NOT NULL REFERENCES runs (id),
    step_id     TEXT    NOT NULL,
    workflow    TEXT    NOT NULL,
    required    BIGINT  NOT NULL,
    -- JSON array of user names.
    approvers   TEXT    NOT NULL,
    -- Who asked for the run (a manual trigger's `--as`); they cannot approve it.
    proposer    TEXT,
    -- JSON: what the step would do (amounts, addresses, fees) and the rule that asked.
    summary     TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired')),
    created_at  BIGINT  NOT NULL,
    deadline_at BIGINT  NOT NULL,
    decided_at  BIGINT,
    reason      TEXT,
    UNIQUE (run_id, step_id)
);
CREATE INDEX approvals_by_status ON approvals (status, deadline_at);

-- One decision per approver and approval.
CREATE TABLE approval_votes (
    approval_id BIGINT NOT NULL REFERENCES approvals (id),
    approver    TEXT   NOT NULL,
    decision    TEXT   NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment     TEXT,
    at          BIGINT NOT NULL,
    PRIMARY KEY (approval_id, approver)
);

-- The link in an approver's email: only the SHA-256 of its token is kept; single use.
CREATE TABLE approval_tokens (
    token_hash  TEXT   PRIMARY KEY,
    approval_id BIGINT NOT NULL REFERENCES approvals (id),
    approver    TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);

-- Who queued a manual run (`satflow trigger --as NAME`).
CREATE TABLE run_proposers (
    run_id   BIGINT PRIMARY KEY REFERENCES runs (id),
    proposer TEXT   NOT NULL
);
