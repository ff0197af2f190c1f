-- `order setup --message-only` keeps its challenge here, so the second call (`--signature`)
-- completes the same one while it is unexpired and unused.
CREATE TABLE pending_challenges (
    workflow     TEXT    PRIMARY KEY,
    challenge_id TEXT    NOT NULL,
    token        TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
