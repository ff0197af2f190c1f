-- `order setup --message-only` keeps its challenge here, so the second call (`--signature`)
-- completes the same one while it is unexpired and unused. (Twin of migrations/sqlite/0003.)
CREATE TABLE pending_challenges (
    workflow     TEXT   PRIMARY KEY,
    challenge_id TEXT   NOT NULL,
    token        TEXT   NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);
